// A deliberately broken training loop for the watchdog's end-to-end test, run under mpirun.
//   hang_scenario skip|resize|healthy RUN_DIR
// Layout tp 2 x dp 2 over the (monitored) world of 4 ranks. Each step: an all_reduce of 64
// elements on tp, then one of 256 on dp, every result checked against its closed form. At step
// 2 the victim, rank 3:
//   skip:    does not call the dp all_reduce and stays out of communication (a rank stuck in its
//            data loader, or a branch that skipped the call); its dp partners wait for it;
//   resize:  calls it with 512 elements. MPI may fail the call, hang, or return wrong data on
//            some ranks: a failure or a wrong result goes to abort_job, a hang to the watchdog,
//            so the job ends with every rank's dump in all three cases;
//   healthy: nothing; the job exits 0 and no rank dumps.
// The watchdog dumps into RUN_DIR/flight_recorder and aborts with MPI_Abort (non-zero exit).
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "parallel/monitored_communicator.h"
#include "parallel/mpi_communicator.h"
#include "parallel/mpi_runtime.h"
#include "parallel/process_groups.h"
#include "parallel/watchdog.h"

namespace {

// The job: tp 2 x dp 2 over 4 ranks, 4 steps, the fault at step 2 on rank 3, a 2 s watchdog.
constexpr int kTp = 2;
constexpr int kSteps = 4;
constexpr int kFaultStep = 2;
constexpr int kVictim = 3;
constexpr auto kTimeout = std::chrono::seconds(2);

// Group rank r's contribution to an all_reduce of n elements: element i is r + i % 3.
std::vector<float> contribution(int rank, int64_t n) {
  std::vector<float> values(n);
  for (int64_t i = 0; i < n; ++i) values[i] = static_cast<float>(rank + i % 3);
  return values;
}

void checked_all_reduce(tessera::Communicator& comm, int64_t n) {
  tessera::Tensor tensor = tessera::Tensor::from_vector(contribution(comm.rank(), n), {n});
  comm.all_reduce(tensor, tessera::ReduceOp::Sum);
  std::vector<float> got = tensor.to_vector<float>();
  int size = comm.size();
  for (int64_t i = 0; i < n; ++i) {
    float expected = static_cast<float>(size * (size - 1) / 2 + size * (i % 3));
    TS_CHECK(got[i] == expected, "hang_scenario: all_reduce on group '", comm.name(), "' returned ", got[i],
             " at element ", i, ", expected ", expected);
  }
}

}  // namespace

int main(int argc, char** argv) {
  tessera::MpiRuntime runtime(&argc, &argv);
  tessera::LaunchContext launch = tessera::launch_context(runtime);
  std::string mode = argc == 3 ? argv[1] : "";
  if (mode != "skip" && mode != "resize" && mode != "healthy") {
    std::fprintf(stderr, "usage: hang_scenario skip|resize|healthy RUN_DIR\n");
    return 2;
  }
  auto recorder = std::make_shared<tessera::FlightRecorder>(launch.rank, launch.world_size);
  tessera::MonitoredCommunicator world(std::make_unique<tessera::MpiCommunicator>(MPI_COMM_WORLD, "world"), recorder);
  tessera::WatchdogOptions watch;
  watch.timeout = kTimeout;
  watch.dump_dir = std::filesystem::path(argv[2]) / "flight_recorder";
  watch.request_poll_interval = std::chrono::milliseconds(100);
  watch.dump_grace = std::chrono::seconds(10);
  watch.abort = tessera::abort_mpi_job;
  tessera::Watchdog watchdog(recorder, watch);
  world.barrier();  // every watchdog is up before anything can go wrong

  try {
    tessera::ParallelLayout layout;
    layout.tp = kTp;
    layout.dp = launch.world_size / kTp;
    tessera::ProcessGroups groups(world, layout);
    for (int step = 0; step < kSteps; ++step) {
      checked_all_reduce(groups.tp(), 64);
      bool faulty = step == kFaultStep && launch.rank == kVictim;
      if (faulty && mode == "skip") {
        std::this_thread::sleep_for(std::chrono::seconds(60));
        std::fprintf(stderr, "hang_scenario: rank %d was not aborted within 60 s\n", launch.rank);
        return 3;
      }
      checked_all_reduce(groups.dp(), faulty && mode == "resize" ? 512 : 256);
    }
    world.barrier();
  } catch (const std::exception& error) {
    watchdog.abort_job(error.what());
  }
  return 0;
}
