// NCCL backend of Communicator for CUDA tensors (see nccl_communicator.h). Every operation
// takes one path (start()): order the communication stream after the compute stream, issue the
// NCCL call(s) under the state's lock, poll the non-blocking communicator until NCCL has
// enqueued the work, and record a completion event that the NcclWork handle later hands to the
// compute stream.
#include "parallel/nccl_communicator.h"

#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "core/cuda/runtime.h"
#include "core/cuda/stream.h"
#include "core/cuda/cuda_backend.h"

namespace tessera {

namespace {

// The text, file and line of an NCCL call, for its error message.
struct NcclCall {
  const char* text;
  const char* file;
  int line;
};

// Expands to the NcclCall of `expr` and a lambda running it on (comm, stream), the two last
// arguments of State::issue() and start().
#define TS_NCCL_CALL(expr) \
  NcclCall{#expr, __FILE__, __LINE__}, [&](ncclComm_t comm, cudaStream_t stream) { return expr; }

ncclConfig_t non_blocking_config() {
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  return config;
}

}  // namespace

struct NcclCommunicator::State {
  // Constructed with `device` current (the events belong to it).
  State(int device, std::string name, int rank, int size)
      : device(device), rank(rank), size(size), name(std::move(name)), stream(device) {}
  ~State();
  State(const State&) = delete;
  State& operator=(const State&) = delete;

  // "all_reduce on group 'tp' (rank 1 of 4)"
  std::string where(std::string_view op) const {
    return detail::concat(op, " on group '", name, "' (rank ", rank, " of ", size, ")");
  }
  void check_not_aborted(std::string_view op) const {
    TS_CHECK(!aborted.load(), where(op),
             ": the communicator was aborted (ncclCommAbort, e.g. by a watchdog after a hang); "
             "its results are invalid and it cannot be used again");
  }
  [[noreturn]] void fail(std::string_view op, const NcclCall& call, ncclResult_t code) const {
    // The comm argument of ncclGetLastError is unused by NCCL; passing null stays safe while
    // another thread aborts the communicator.
    const char* last = ncclGetLastError(nullptr);
    detail::throw_error(call.text, call.file, call.line,
                        detail::concat(where(op), ": NCCL call failed: ", ncclGetErrorString(code),
                                       last && *last ? detail::concat(" (", last, ")") : std::string()));
  }

  // Waits until the non-blocking communicator `target` has finished the call that returned
  // `result`, polling under the lock so that abort() can run in between; throws on failure.
  void settle(std::string_view op, const NcclCall& call, ncclResult_t result, ncclComm_t target) {
    while (result == ncclInProgress) {
      std::this_thread::yield();
      std::lock_guard<std::mutex> lock(mutex);
      check_not_aborted(op);
      ncclResult_t query = ncclCommGetAsyncError(target, &result);
      if (query != ncclSuccess) fail(op, NcclCall{"ncclCommGetAsyncError", call.file, call.line}, query);
    }
    if (result != ncclSuccess) fail(op, call, result);
  }

  // Runs `run(comm, stream)` (NCCL calls) under the lock and settles it.
  template <typename Run>
  void issue(std::string_view op, const NcclCall& call, Run&& run) {
    ncclResult_t result = ncclSuccess;
    ncclComm_t target = nullptr;  // read under the lock: abort() clears `comm`
    {
      std::lock_guard<std::mutex> lock(mutex);
      check_not_aborted(op);
      target = comm;
      result = run(target, stream.get());
    }
    settle(op, call, result, target);
  }

  // Creates the communicator from `id` (collective over the `size` ranks that share it).
  void init(const ncclUniqueId& id) {
    ncclConfig_t config = non_blocking_config();
    NcclCall call{"ncclCommInitRankConfig(&comm, size, id, rank, &config)", __FILE__, __LINE__};
    ncclResult_t result = ncclCommInitRankConfig(&comm, size, id, rank, &config);
    settle("init", call, result, comm);
    initialized = true;
  }

  void abort() noexcept {
    std::lock_guard<std::mutex> lock(mutex);
    if (aborted.exchange(true) || comm == nullptr) return;
    ncclResult_t result = ncclCommAbort(comm);
    comm = nullptr;
    if (result != ncclSuccess && result != ncclInProgress) {
      std::fprintf(stderr, "NcclCommunicator '%s' (rank %d): ncclCommAbort failed: %s\n", name.c_str(), rank,
                   ncclGetErrorString(result));
    }
  }

  const int device;
  int rank;
  int size;
  std::string name;
  CudaStream stream;  // this communicator's operations run here
  CudaEvent ready;    // recorded on the compute stream; `stream` waits for it
  std::mutex mutex;   // held while an NCCL call uses `comm`, and by abort()
  ncclComm_t comm = nullptr;
  bool initialized = false;  // init or split finished: destroy (not abort) at the end
  std::atomic<bool> aborted{false};
  Tensor barrier_buffer;  // barrier()'s one element, made on first use
};

NcclCommunicator::State::~State() {
  if (aborted.load() || comm == nullptr) return;
  const char* call = "ncclCommAbort";
  ncclResult_t result = ncclSuccess;
  try {
    // A communicator whose creation failed or was interrupted can only be aborted, and so can one
    // destroyed while an exception unwinds: its peers may be inside a collective this rank will
    // never join, and finalizing would wait for them forever. Otherwise, as NCCL asks of a
    // non-blocking communicator: finalize (flushes this rank's operations), poll, destroy.
    if (initialized && std::uncaught_exceptions() == 0) {
      settle("destroy", NcclCall{"ncclCommFinalize(comm)", __FILE__, __LINE__}, ncclCommFinalize(comm), comm);
      call = "ncclCommDestroy";
      result = ncclCommDestroy(comm);
    } else {
      result = ncclCommAbort(comm);
    }
  } catch (const std::exception& error) {
    std::fprintf(stderr, "NcclCommunicator: %s; aborting instead\n", error.what());
    result = ncclCommAbort(comm);
  }
  if (result != ncclSuccess && result != ncclInProgress) {  // an abort may finish in the background
    std::fprintf(stderr, "NcclCommunicator '%s' (rank %d): %s failed: %s\n", name.c_str(), rank, call,
                 ncclGetErrorString(result));
  }
}

namespace {

using State = NcclCommunicator::State;

// An operation on the communication stream. finish() makes the compute stream wait for its
// completion event and only then releases the tensors it uses: after that the caching
// allocator's stream order protects their memory. A handle destroyed unfinished finishes in its
// destructor, logging (never throwing) on failure.
class NcclWork final : public WorkHandle {
 public:
  // Called with the state's device current (the event belongs to it).
  NcclWork(std::shared_ptr<State> state, std::string_view op, std::vector<Tensor> buffers)
      : state_(std::move(state)), op_(op), buffers_(std::move(buffers)), done_(std::make_shared<CudaEvent>()) {
    done_->record(state_->stream.get());
  }
  ~NcclWork() override {
    if (finished_) return;
    try {
      finish();
    } catch (const std::exception& error) {
      std::fprintf(stderr, "NcclWork: finishing %s in the destructor failed: %s\n", op_.c_str(), error.what());
    }
  }
  void wait() override {
    if (!finished_) finish();
    state_->check_not_aborted(op_);
  }
  bool is_completed() override {
    if (!finished_ && done_->query()) finish();
    return finished_;
  }
  std::function<bool()> device_completion() const override {
    return [done = done_] { return done->query(); };
  }

 private:
  void finish() {
    CudaDeviceGuard guard(state_->device);
    done_->wait_on(cuda_backend(state_->device).stream());
    buffers_.clear();
    finished_ = true;
  }

  std::shared_ptr<State> state_;
  std::string op_;
  std::vector<Tensor> buffers_;
  std::shared_ptr<CudaEvent> done_;  // shared with device_completion()'s query
  bool finished_ = false;
};

// Orders the communication stream after the compute stream's queued work, issues `run` and
// returns the operation's handle, which holds `buffers` until it is finished.
template <typename Run>
std::unique_ptr<WorkHandle> start(const std::shared_ptr<State>& state, std::string_view op, std::vector<Tensor> buffers,
                                  const NcclCall& call, Run&& run) {
  CudaDeviceGuard guard(state->device);
  state->ready.record(cuda_backend(state->device).stream());
  state->ready.wait_on(state->stream.get());
  state->issue(op, call, std::forward<Run>(run));
  return std::make_unique<NcclWork>(state, op, std::move(buffers));
}

std::shared_ptr<State> make_state(int device, std::string name, int rank, int size) {
  int visible = cuda_device_count();
  TS_CHECK(device >= 0 && device < visible, "NcclCommunicator '", name, "' (rank ", rank, " of ", size,
           "): GPU cuda:", device, " is not visible (", visible,
           " GPU(s) visible); pass a device index below that count (one GPU per rank: the node-local rank)");
  CudaDeviceGuard guard(device);
  return std::make_shared<State>(device, std::move(name), rank, size);
}

// make_state() for each rank of `bootstrap`, which then agree on the outcome: a rank that
// cannot use its GPU (more ranks on a node than GPUs, say) would otherwise leave the others
// waiting forever for the NCCL id.
std::shared_ptr<State> make_state_on_every_rank(Communicator& bootstrap, int device) {
  TS_CHECK(bootstrap.device() == Device::cpu(), "NcclCommunicator '", bootstrap.name(), "' (rank ", bootstrap.rank(),
           " of ", bootstrap.size(), "): the bootstrap communicator must work on the CPU (an MpiCommunicator), not on ",
           bootstrap.device().str());
  std::shared_ptr<State> state;
  std::string error;
  try {
    state = make_state(device, bootstrap.name(), bootstrap.rank(), bootstrap.size());
  } catch (const Error& failure) {
    error = failure.what();
  }
  Tensor failed_rank = Tensor::full({1}, error.empty() ? -1.0 : bootstrap.rank(), DType::I32);
  bootstrap.all_reduce(failed_rank, ReduceOp::Max);
  if (!error.empty()) throw Error(error);
  int64_t failed = static_cast<int64_t>(failed_rank.item());
  TS_CHECK(failed < 0, "NcclCommunicator '", bootstrap.name(), "' (rank ", bootstrap.rank(), " of ", bootstrap.size(),
           "): rank ", failed, " cannot use its GPU (see its error), so no rank creates the communicator");
  return state;
}

size_t byte_count(const Tensor& tensor) { return static_cast<size_t>(tensor.numel()) * dtype_size(tensor.dtype()); }

// NCCL's type for a reduction of `dtype` by `reduce`.
ncclDataType_t reduction_type(const State& state, std::string_view op, DType dtype, ReduceOp reduce) {
  TS_CHECK(dtype != DType::Bool, state.where(op), ": cannot reduce a bool tensor");
  TS_CHECK(reduce != ReduceOp::Avg || is_floating(dtype), state.where(op), ": avg needs a floating dtype, got ",
           dtype_name(dtype), "; use sum and divide");
  switch (dtype) {
    case DType::F32:
      return ncclFloat32;
    case DType::F64:
      return ncclFloat64;
    case DType::BF16:
      return ncclBfloat16;
    case DType::F16:
      return ncclFloat16;
    case DType::I32:
      return ncclInt32;
    case DType::I64:
      return ncclInt64;
    default:
      break;
  }
  TS_CHECK(false, state.where(op), ": NCCL cannot reduce ", dtype_name(dtype));
  return ncclFloat32;  // unreachable
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return ncclSum;
    case ReduceOp::Avg:
      return ncclAvg;
    case ReduceOp::Max:
      return ncclMax;
  }
  return ncclSum;
}

}  // namespace

NcclCommunicator::NcclCommunicator(std::shared_ptr<State> state) : state_(std::move(state)) {}

NcclCommunicator::NcclCommunicator(int device_index, std::string name)
    : state_(make_state(device_index, std::move(name), 0, 1)) {
  CudaDeviceGuard guard(state_->device);
  ncclUniqueId id;
  NcclCall call{"ncclGetUniqueId(&id)", __FILE__, __LINE__};
  ncclResult_t result = ncclGetUniqueId(&id);
  if (result != ncclSuccess) state_->fail("init", call, result);
  state_->init(id);
}

NcclCommunicator::NcclCommunicator(Communicator& bootstrap, int device_index)
    : state_(make_state_on_every_rank(bootstrap, device_index)) {
  CudaDeviceGuard guard(state_->device);
  // Rank 0 broadcasts [ok, id...]; ok = 0 tells the other ranks that making the id failed, so
  // every rank throws instead of waiting for an id that never comes.
  static_assert(sizeof(ncclUniqueId) % sizeof(int64_t) == 0);
  constexpr int64_t id_words = sizeof(ncclUniqueId) / sizeof(int64_t);
  Tensor packed = Tensor::zeros({1 + id_words}, DType::I64);
  int64_t* words = packed.data<int64_t>();
  ncclUniqueId id;
  std::memset(&id, 0, sizeof(id));
  ncclResult_t result = ncclSuccess;
  if (rank() == 0) {
    result = ncclGetUniqueId(&id);
    words[0] = result == ncclSuccess ? 1 : 0;
    std::memcpy(words + 1, &id, sizeof(id));
  }
  bootstrap.broadcast(packed, 0);
  NcclCall call{"ncclGetUniqueId(&id)", __FILE__, __LINE__};
  if (result != ncclSuccess) state_->fail("init", call, result);
  TS_CHECK(words[0] == 1, state_->where("init"), ": rank 0 could not create the NCCL unique id (see its error)");
  std::memcpy(&id, words + 1, sizeof(id));
  state_->init(id);
}

NcclCommunicator::~NcclCommunicator() = default;

int NcclCommunicator::rank() const { return state_->rank; }
int NcclCommunicator::size() const { return state_->size; }
const std::string& NcclCommunicator::name() const { return state_->name; }
Device NcclCommunicator::device() const { return Device::cuda(state_->device); }

void NcclCommunicator::abort() { state_->abort(); }
bool NcclCommunicator::aborted() const { return state_->aborted.load(); }

std::string NcclCommunicator::nccl_version() {
  int code = 0;
  ncclResult_t result = ncclGetVersion(&code);
  TS_CHECK(result == ncclSuccess, "ncclGetVersion failed: ", ncclGetErrorString(result));
  // NCCL >= 2.9 encodes major * 10000 + minor * 100 + patch.
  return detail::concat(code / 10000, ".", code / 100 % 100, ".", code % 100);
}

// Not ncclCommSplit: on an H100 with NCCL 2.28 a non-blocking parent's split finished without
// a child communicator. Instead the parent all-gathers every rank's (color, key), each color's
// first member (by key, then parent rank) makes a unique id, the parent all-gathers the ids, and
// each group initialises its communicator from its leader's id, as communicators were made
// before ncclCommSplit existed.
std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key, std::string name) const {
  State& parent = *state_;
  TS_CHECK(color >= 0, parent.where("split"), ": color must be >= 0, got ", color);
  parent.check_not_aborted("split");
  auto& self = const_cast<NcclCommunicator&>(*this);  // the exchange runs collectives on this group
  const Device device = this->device();
  static_assert(sizeof(ncclUniqueId) % sizeof(int64_t) == 0);
  constexpr int64_t id_words = sizeof(ncclUniqueId) / sizeof(int64_t);

  Tensor mine = Tensor::from_vector(std::vector<int64_t>{color, key}, Shape{2}).to(device);
  Tensor all = Tensor::empty(Shape{2 * int64_t(size())}, DType::I64, device);
  self.all_gather(mine, all);
  const std::vector<int64_t> pairs = all.to_vector<int64_t>();
  std::vector<int> members;  // parent ranks of this color, in child-rank order
  for (int r = 0; r < size(); ++r)
    if (pairs[2 * r] == color) members.push_back(r);
  std::stable_sort(members.begin(), members.end(), [&](int a, int b) { return pairs[2 * a + 1] < pairs[2 * b + 1]; });
  const int child_rank = static_cast<int>(std::find(members.begin(), members.end(), rank()) - members.begin());
  const int leader = members.front();

  std::vector<int64_t> my_id(static_cast<size_t>(id_words), 0);
  if (rank() == leader) {
    ncclUniqueId id;
    NcclCall call{"ncclGetUniqueId(&id)", __FILE__, __LINE__};
    ncclResult_t result = ncclGetUniqueId(&id);
    if (result != ncclSuccess) parent.fail("split", call, result);
    std::memcpy(my_id.data(), &id, sizeof(id));
  }
  Tensor ids = Tensor::empty(Shape{id_words * size()}, DType::I64, device);
  self.all_gather(Tensor::from_vector(my_id, Shape{id_words}).to(device), ids);
  const std::vector<int64_t> all_ids = ids.to_vector<int64_t>();
  ncclUniqueId id;
  std::memcpy(&id, all_ids.data() + int64_t(leader) * id_words, sizeof(id));

  std::shared_ptr<State> child = make_state(parent.device, std::move(name), child_rank, int(members.size()));
  CudaDeviceGuard guard(parent.device);
  child->init(id);
  return std::unique_ptr<Communicator>(new NcclCommunicator(std::move(child)));
}

std::unique_ptr<WorkHandle> NcclCommunicator::all_reduce_async(Tensor& tensor, ReduceOp op) {
  check_comm_tensor(*this, "all_reduce", tensor, "input/output");
  ncclDataType_t type = reduction_type(*state_, "all_reduce", tensor.dtype(), op);
  ncclRedOp_t reduce = nccl_op(op);
  void* data = tensor.data_ptr();
  size_t count = static_cast<size_t>(tensor.numel());
  return start(state_, "all_reduce", {tensor},
               TS_NCCL_CALL(ncclAllReduce(data, data, count, type, reduce, comm, stream)));
}

std::unique_ptr<WorkHandle> NcclCommunicator::all_gather_async(const Tensor& in, Tensor& out) {
  check_all_gather_args(*this, "all_gather", in, out);
  const void* send = in.data_ptr();
  void* recv = out.data_ptr();
  size_t bytes = byte_count(in);
  return start(state_, "all_gather", {in, out},
               TS_NCCL_CALL(ncclAllGather(send, recv, bytes, ncclUint8, comm, stream)));
}

std::unique_ptr<WorkHandle> NcclCommunicator::reduce_scatter_async(const Tensor& in, Tensor& out, ReduceOp op) {
  check_reduce_scatter_args(*this, "reduce_scatter", in, out);
  ncclDataType_t type = reduction_type(*state_, "reduce_scatter", in.dtype(), op);
  ncclRedOp_t reduce = nccl_op(op);
  const void* send = in.data_ptr();
  void* recv = out.data_ptr();
  size_t count = static_cast<size_t>(out.numel());
  return start(state_, "reduce_scatter", {in, out},
               TS_NCCL_CALL(ncclReduceScatter(send, recv, count, type, reduce, comm, stream)));
}

void NcclCommunicator::all_reduce(Tensor& tensor, ReduceOp op) { all_reduce_async(tensor, op)->wait(); }

void NcclCommunicator::all_gather(const Tensor& in, Tensor& out) { all_gather_async(in, out)->wait(); }

void NcclCommunicator::reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) {
  reduce_scatter_async(in, out, op)->wait();
}

void NcclCommunicator::broadcast(Tensor& tensor, int root) {
  check_comm_tensor(*this, "broadcast", tensor, "input/output");
  check_peer(*this, "broadcast", root);
  void* data = tensor.data_ptr();
  size_t bytes = byte_count(tensor);
  start(state_, "broadcast", {tensor}, TS_NCCL_CALL(ncclBroadcast(data, data, bytes, ncclUint8, root, comm, stream)))
      ->wait();
}

void NcclCommunicator::send(const Tensor& tensor, int peer, int /*tag*/) {
  check_comm_tensor(*this, "send", tensor, "input");
  check_peer(*this, "send", peer);
  // A lone send to oneself would wait on the GPU for a receive queued behind it.
  TS_CHECK(peer != rank(), state_->where("send"),
           ": sending to oneself is not supported by NCCL outside a group; copy the tensor instead");
  const void* data = tensor.data_ptr();
  size_t bytes = byte_count(tensor);
  start(state_, "send", {tensor}, TS_NCCL_CALL(ncclSend(data, bytes, ncclUint8, peer, comm, stream)))->wait();
}

void NcclCommunicator::recv(Tensor& tensor, int peer, int /*tag*/) {
  check_comm_tensor(*this, "recv", tensor, "output");
  check_peer(*this, "recv", peer);
  TS_CHECK(peer != rank(), state_->where("recv"),
           ": receiving from oneself is not supported by NCCL outside a group; copy the tensor instead");
  void* data = tensor.data_ptr();
  size_t bytes = byte_count(tensor);
  start(state_, "recv", {tensor}, TS_NCCL_CALL(ncclRecv(data, bytes, ncclUint8, peer, comm, stream)))->wait();
}

void NcclCommunicator::all_to_all(const Tensor& in, Tensor& out) {
  check_all_to_all_args(*this, "all_to_all", in, out);
  const char* send = static_cast<const char*>(in.data_ptr());
  char* recv = static_cast<char*>(out.data_ptr());
  size_t block = byte_count(in) / static_cast<size_t>(size());
  int ranks = size();
  // One group of a send and a receive per peer (oneself included): NCCL runs them together.
  auto grouped = [&](ncclComm_t comm, cudaStream_t stream) {
    ncclResult_t result = ncclGroupStart();
    if (result != ncclSuccess) return result;
    for (int q = 0; q < ranks && result == ncclSuccess; ++q) {
      result = ncclSend(send + q * block, block, ncclUint8, q, comm, stream);
      if (result == ncclSuccess) result = ncclRecv(recv + q * block, block, ncclUint8, q, comm, stream);
    }
    ncclResult_t end = ncclGroupEnd();  // always closes the group, also after a failed call
    return result != ncclSuccess ? result : end;
  };
  start(state_, "all_to_all", {in, out},
        NcclCall{"ncclGroupStart; ncclSend/ncclRecv per peer; ncclGroupEnd", __FILE__, __LINE__}, grouped)
      ->wait();
}

std::unique_ptr<WorkHandle> NcclCommunicator::batch_send_recv(std::vector<P2pOp> ops) {
  check_p2p_ops(*this, "batch_send_recv", ops);
  std::vector<Tensor> buffers;
  for (const P2pOp& op : ops) buffers.push_back(op.tensor);
  // One group: NCCL posts every send and receive before any of them waits for its peer.
  auto grouped = [&](ncclComm_t comm, cudaStream_t stream) {
    ncclResult_t result = ncclGroupStart();
    if (result != ncclSuccess) return result;
    for (size_t i = 0; i < ops.size() && result == ncclSuccess; ++i) {
      const P2pOp& op = ops[i];
      size_t bytes = byte_count(op.tensor);
      result = op.kind == P2pOp::Kind::Send ? ncclSend(op.tensor.data_ptr(), bytes, ncclUint8, op.peer, comm, stream)
                                            : ncclRecv(op.tensor.data_ptr(), bytes, ncclUint8, op.peer, comm, stream);
    }
    ncclResult_t end = ncclGroupEnd();  // always closes the group, also after a failed call
    return result != ncclSuccess ? result : end;
  };
  return start(state_, "batch_send_recv", std::move(buffers),
               NcclCall{"ncclGroupStart; ncclSend/ncclRecv per operation; ncclGroupEnd", __FILE__, __LINE__}, grouped);
}

void NcclCommunicator::barrier() {
  State& state = *state_;
  state.check_not_aborted("barrier");
  if (!state.barrier_buffer.defined()) state.barrier_buffer = Tensor::zeros({1}, DType::F32, device());
  all_reduce(state.barrier_buffer, ReduceOp::Max);
  // The compute stream now waits for the all-reduce, which ends once every rank has joined it.
  cuda_backend(state.device).synchronize();
  state.check_not_aborted("barrier");
}

}  // namespace tessera
