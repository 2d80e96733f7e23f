// Collective bandwidth with nccl-tests' definitions: all_reduce, all_gather and reduce_scatter
// from 1 KB up (x4 steps by default), in f32 and bf16. One row per (op, dtype, size):
//   size   bytes of the full buffer (all_reduce's tensor, all_gather's output, reduce_scatter's
//          input), as nccl-tests counts them; count is its number of elements
//   time   mean of the timed iterations on the slowest rank, in microseconds
//   algbw  size / time, in GB/s (1e9 bytes)
//   busbw  algbw * 2(n-1)/n for all_reduce, algbw * (n-1)/n for all_gather and reduce_scatter
//          (n ranks): the traffic a link carries in a ring, comparable across rank counts
//   check  the first call's result against its closed form (sampled: first, middle and last
//          element of every rank's block); the exit status is 1 if any check fails
// Backends: NCCL on GPUs when built with CUDA and a GPU is visible (the world comes from MPI
// when launched by mpirun or srun, one GPU per node-local rank; else it is one rank), otherwise
// MPI on CPU tensors, whose sweep stops at 64 MB by default so that it takes seconds.
//   collectives [--backend auto|nccl|mpi] [--min-bytes 1024] [--max-bytes N] [--factor 4]
//               [--dtype f32 --dtype bf16] [--op all_reduce ...] [--warmup W] [--iters I]
// Runs as one process or as `mpirun -np N collectives ...`; rank 0 prints.
#include <fmt/core.h>
#include <mpi.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/cuda/runtime.h"
#include "parallel/mpi_communicator.h"
#include "parallel/mpi_runtime.h"
#ifdef TESSERA_WITH_NCCL
#include "core/cuda/cuda_backend.h"
#include "parallel/nccl_communicator.h"
#endif

namespace {

using namespace tessera;
using Clock = std::chrono::steady_clock;

enum class Op { AllReduce, AllGather, ReduceScatter };

Op op_from_name(const std::string& name) {
  if (name == "all_reduce") return Op::AllReduce;
  if (name == "all_gather") return Op::AllGather;
  return Op::ReduceScatter;
}

// nccl-tests' busbw factor for n ranks.
double bus_factor(Op op, int n) {
  double ring = static_cast<double>(n - 1) / n;
  return op == Op::AllReduce ? 2.0 * ring : ring;
}

// Launched by mpirun (Open MPI), srun --mpi=pmix or another PMI launcher.
bool launched_by_mpi() {
  for (const char* variable : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"}) {
    if (std::getenv(variable) != nullptr) return true;
  }
  return false;
}

// Blocks the host until the device's queued work (the communicator orders its operations
// before the compute stream's later work) has finished.
void synchronize(Device device) {
#ifdef TESSERA_WITH_NCCL
  if (device.is_cuda()) cuda_backend(device.index).synchronize();
#else
  (void)device;
#endif
}

struct Row {
  int64_t bytes = 0;
  int64_t count = 0;
  double seconds = 0;
  bool correct = true;
};

// One (op, dtype, size): buffers of n equal blocks, filled so that every result has a closed
// form; the first call is checked, the rest of the warm-up and the timed calls reuse the
// buffers (all_reduce's values grow, which costs nothing).
class Case {
 public:
  Case(Communicator& comm, Op op, DType dtype, int64_t block) : comm_(comm), op_(op), block_(block) {
    const int n = comm.size(), rank = comm.rank();
    const Device device = comm.device();
    const int64_t count = block * n;
    switch (op) {
      case Op::AllReduce:  // every element rank + 1; sum n(n+1)/2
        in_ = Tensor::full({count}, rank + 1.0, dtype, device);
        break;
      case Op::AllGather:  // rank + 1; block q of the output: q + 1
        in_ = Tensor::full({block}, rank + 1.0, dtype, device);
        out_ = Tensor::zeros({count}, dtype, device);
        break;
      case Op::ReduceScatter:  // block q: (rank + 1)(q + 1); rank r gets (r + 1) n(n+1)/2
        in_ = Tensor::empty({count}, dtype, device);
        for (int q = 0; q < n; ++q) in_.narrow(0, q * block, block).fill_((rank + 1.0) * (q + 1.0));
        out_ = Tensor::zeros({block}, dtype, device);
        break;
    }
  }

  void run() {
    switch (op_) {
      case Op::AllReduce:
        comm_.all_reduce(in_, ReduceOp::Sum);
        break;
      case Op::AllGather:
        comm_.all_gather(in_, out_);
        break;
      case Op::ReduceScatter:
        comm_.reduce_scatter(in_, out_, ReduceOp::Sum);
        break;
    }
  }

  // After the first run(): samples the output against the closed form (relative 1e-2, which
  // bf16 meets; the values are small integers, exact in f32).
  bool check() const {
    const int n = comm_.size();
    const double triangle = n * (n + 1) / 2.0;
    const Tensor& result = op_ == Op::AllReduce ? in_ : out_;
    const int blocks = op_ == Op::ReduceScatter ? 1 : n;
    for (int q = 0; q < blocks; ++q) {
      double want = op_ == Op::AllReduce ? triangle : op_ == Op::AllGather ? q + 1.0 : (comm_.rank() + 1.0) * triangle;
      for (int64_t i : {int64_t{0}, block_ / 2, block_ - 1}) {
        double got = result.narrow(0, q * block_ + i, 1).item();
        if (!(std::abs(got - want) <= 1e-2 * want)) return false;
      }
    }
    return true;
  }

 private:
  Communicator& comm_;
  Op op_;
  int64_t block_;
  Tensor in_, out_;
};

Row measure(Communicator& comm, Op op, DType dtype, int64_t block, int warmup, int iters) {
  const Device device = comm.device();
  Case bench_case(comm, op, dtype, block);
  Row row;
  row.count = block * comm.size();
  row.bytes = row.count * static_cast<int64_t>(dtype_size(dtype));
  bench_case.run();
  row.correct = bench_case.check();
  for (int i = 1; i < warmup; ++i) bench_case.run();
  comm.barrier();
  const auto start = Clock::now();
  for (int i = 0; i < iters; ++i) bench_case.run();
  synchronize(device);
  double seconds = std::chrono::duration<double>(Clock::now() - start).count() / iters;
  // The slowest rank's time, and a failed check anywhere, decide the row.
  Tensor shared = Tensor::from_vector(std::vector<double>{seconds, row.correct ? 0.0 : 1.0}, {2}).to(device);
  comm.all_reduce(shared, ReduceOp::Max);
  std::vector<double> worst = shared.to_vector<double>();
  row.seconds = worst[0];
  row.correct = worst[1] == 0.0;
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Collective bus bandwidth (nccl-tests' definitions) over NCCL or MPI"};
  std::string backend = "auto";
  int64_t min_bytes = 1024, max_bytes = 0;
  int factor = 4, warmup = -1, iters = -1;
  std::vector<std::string> dtype_names = {"f32", "bf16"};
  std::vector<std::string> op_names = {"all_reduce", "all_gather", "reduce_scatter"};
  app.add_option("--backend", backend, "nccl (CUDA tensors), mpi (CPU tensors) or auto: nccl where a GPU is visible")
      ->check(CLI::IsMember({"auto", "nccl", "mpi"}));
  app.add_option("--min-bytes", min_bytes, "smallest buffer")->check(CLI::PositiveNumber);
  app.add_option("--max-bytes", max_bytes, "largest buffer (default: 1 GiB with nccl, 64 MiB with mpi)")
      ->check(CLI::PositiveNumber);
  app.add_option("--factor", factor, "size step")->check(CLI::Range(2, 1024));
  app.add_option("--dtype", dtype_names, "element types")->check(CLI::IsMember({"f32", "bf16"}));
  app.add_option("--op", op_names, "collectives")->check(CLI::IsMember({"all_reduce", "all_gather", "reduce_scatter"}));
  app.add_option("--warmup", warmup, "untimed calls per row, the first one checked (default: 5 nccl, 1 mpi)")
      ->check(CLI::PositiveNumber);
  app.add_option("--iters", iters, "timed calls per row (default: 20 nccl, 5 mpi)")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  bool nccl = backend == "nccl" || (backend == "auto" && cuda_device_count() > 0);
#ifndef TESSERA_WITH_NCCL
  if (nccl && backend == "nccl") {
    fmt::print(stderr, "collectives: --backend nccl needs a CUDA build (this one has no NCCL); use --backend mpi\n");
    return 1;
  }
  nccl = false;
#endif
  if (max_bytes == 0) max_bytes = nccl ? int64_t{1} << 30 : int64_t{64} << 20;
  if (warmup < 0) warmup = nccl ? 5 : 1;
  if (iters < 0) iters = nccl ? 20 : 5;

  // MPI: for the MPI backend always (a lone process is a singleton world), for NCCL only to
  // bootstrap a world of several ranks.
  std::optional<MpiRuntime> mpi;
  std::unique_ptr<MpiCommunicator> mpi_world;
  if (!nccl || launched_by_mpi()) {
    mpi.emplace(&argc, &argv);
    mpi_world = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, "world");
  }
  try {
    Communicator* comm = mpi_world.get();
    std::string library = "MPI";
#ifdef TESSERA_WITH_NCCL
    std::unique_ptr<NcclCommunicator> nccl_world;
    if (nccl) {
      nccl_world = mpi_world ? std::make_unique<NcclCommunicator>(*mpi_world, launch_context(*mpi).local_rank)
                             : std::make_unique<NcclCommunicator>(0);
      comm = nccl_world.get();
      library = "NCCL " + NcclCommunicator::nccl_version();
    }
#endif
    const bool printer = comm->rank() == 0;
    if (printer) {
      fmt::print("# collectives: {} on {}, {} rank(s), warmup {}, iters {}\n", library, comm->device().str(),
                 comm->size(), warmup, iters);
      fmt::print("# {:<15} {:<5} {:>12} {:>12} {:>12} {:>12} {:>12}  {}\n", "op", "dtype", "size(B)", "count",
                 "time(us)", "algbw(GB/s)", "busbw(GB/s)", "check");
    }
    bool all_correct = true;
    for (const std::string& op_name : op_names) {
      for (const std::string& dtype_text : dtype_names) {
        const Op op = op_from_name(op_name);
        const DType dtype = dtype_from_name(dtype_text);
        const int64_t element = static_cast<int64_t>(dtype_size(dtype));
        for (int64_t bytes = min_bytes; bytes <= max_bytes; bytes *= factor) {
          const int64_t block = bytes / (element * comm->size());
          if (block == 0) continue;  // fewer elements than ranks
          Row row = measure(*comm, op, dtype, block, warmup, iters);
          all_correct = all_correct && row.correct;
          const double algbw = static_cast<double>(row.bytes) / row.seconds / 1e9;
          if (printer) {
            fmt::print("  {:<15} {:<5} {:>12} {:>12} {:>12.1f} {:>12.2f} {:>12.2f}  {}\n", op_name, dtype_text,
                       row.bytes, row.count, row.seconds * 1e6, algbw, algbw * bus_factor(op, comm->size()),
                       row.correct ? "ok" : "WRONG");
          }
        }
      }
    }
    return all_correct ? 0 : 1;
  } catch (const Error& error) {
    fmt::print(stderr, "collectives: {}\n", error.what());
    // The other ranks may be waiting in a collective: end them too.
    if (mpi_world && mpi_world->size() > 1) MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
}
