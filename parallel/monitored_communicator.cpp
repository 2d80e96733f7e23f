// Flight-recording decorator of Communicator (see monitored_communicator.h).
#include "parallel/monitored_communicator.h"

#include <cstdio>
#include <exception>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace tessera {

namespace {

// The descriptive part of a record: op name, dtype and shapes of the tensors that are defined
// (an undefined one is the inner communicator's error to report).
OpRecord describe(std::string op, std::initializer_list<const Tensor*> tensors) {
  OpRecord record;
  record.op = std::move(op);
  for (const Tensor* tensor : tensors) {
    if (!tensor->defined()) continue;
    if (record.dtype.empty()) record.dtype = std::string(dtype_name(tensor->dtype()));
    record.shapes.push_back(tensor->shape());
  }
  return record;
}

OpRecord describe_reduction(std::string op, std::initializer_list<const Tensor*> tensors, ReduceOp reduce) {
  OpRecord record = describe(std::move(op), tensors);
  record.reduce_op = std::string(reduce_op_name(reduce));
  return record;
}

OpRecord describe_p2p(std::string op, const Tensor& tensor, int peer, int tag) {
  OpRecord record = describe(std::move(op), {&tensor});
  record.p2p = true;
  record.peer = peer;
  record.tag = tag;
  return record;
}

// Registers `comm`'s group: its members' global ranks, gathered over it.
int register_group(Communicator& comm, FlightRecorder& recorder) {
  Tensor mine = Tensor::from_vector(std::vector<int64_t>{recorder.global_rank()}, {1}, comm.device());
  Tensor all = Tensor::empty({comm.size()}, DType::I64, comm.device());
  comm.all_gather(mine, all);
  std::vector<int64_t> ranks = all.to_vector<int64_t>();
  return recorder.add_group(comm.name(), std::vector<int>(ranks.begin(), ranks.end()), comm.rank());
}

// Wraps the inner backend's handle; its completion is recorded the first time it is observed,
// for every entry it stands for (one, or a batch's operations). After wait() on a stream-ordered
// backend the entries stay in flight until the device has run them (the watchdog polls).
class MonitoredWork final : public WorkHandle {
 public:
  MonitoredWork(std::unique_ptr<WorkHandle> inner, std::shared_ptr<FlightRecorder> recorder, std::vector<uint64_t> ids)
      : inner_(std::move(inner)), recorder_(std::move(recorder)), ids_(std::move(ids)) {}
  ~MonitoredWork() override {
    if (finished_) return;
    try {
      wait();
    } catch (const std::exception& error) {
      std::fprintf(stderr, "MonitoredWork: waiting in destructor failed: %s\n", error.what());
    }
  }
  void wait() override {
    if (finished_) return;
    try {
      inner_->wait();
    } catch (const std::exception& error) {
      finish(OpState::Failed, error.what());
      throw;
    }
    std::function<bool()> on_device = inner_->device_completion();
    if (!on_device) {
      finish(OpState::Completed);
      return;
    }
    finished_ = true;
    for (uint64_t id : ids_) recorder_->set_device_pending(id, on_device);
  }
  bool is_completed() override {
    if (finished_) return true;
    bool done = false;
    try {
      done = inner_->is_completed();
    } catch (const std::exception& error) {
      finish(OpState::Failed, error.what());
      throw;
    }
    if (done) finish(OpState::Completed);
    return done;
  }

 private:
  void finish(OpState state, const std::string& error = {}) {
    finished_ = true;
    for (uint64_t id : ids_) recorder_->set_state(id, state, error);
  }

  std::unique_ptr<WorkHandle> inner_;
  std::shared_ptr<FlightRecorder> recorder_;
  std::vector<uint64_t> ids_;
  bool finished_ = false;
};

}  // namespace

MonitoredCommunicator::MonitoredCommunicator(std::unique_ptr<Communicator> inner,
                                             std::shared_ptr<FlightRecorder> recorder)
    : inner_(std::move(inner)), recorder_(std::move(recorder)) {
  TS_CHECK(inner_ != nullptr && recorder_ != nullptr,
           "MonitoredCommunicator: needs a communicator to wrap and a flight recorder");
  group_ = register_group(*inner_, *recorder_);
}

template <typename Call>
void MonitoredCommunicator::run(OpRecord record, Call&& call) const {
  uint64_t id = recorder_->start(group_, std::move(record));
  try {
    call();
  } catch (const std::exception& error) {
    recorder_->set_state(id, OpState::Failed, error.what());
    throw;
  }
  recorder_->set_state(id, OpState::Completed);
}

template <typename Call>
std::unique_ptr<WorkHandle> MonitoredCommunicator::run_async(OpRecord record, Call&& call) {
  uint64_t id = recorder_->start(group_, std::move(record));
  std::unique_ptr<WorkHandle> inner;
  try {
    inner = call();
  } catch (const std::exception& error) {
    recorder_->set_state(id, OpState::Failed, error.what());
    throw;
  }
  recorder_->set_state(id, OpState::Scheduled);
  return std::make_unique<MonitoredWork>(std::move(inner), recorder_, std::vector<uint64_t>{id});
}

std::unique_ptr<Communicator> MonitoredCommunicator::split(int color, int key, std::string name) const {
  std::unique_ptr<Communicator> child;
  run(describe("split", {}),
      [&] { child = std::make_unique<MonitoredCommunicator>(inner_->split(color, key, std::move(name)), recorder_); });
  return child;
}

// The blocking collectives go through the async path: on a stream-ordered backend their entries
// then stay in flight until the device has run them.
void MonitoredCommunicator::all_reduce(Tensor& tensor, ReduceOp op) { all_reduce_async(tensor, op)->wait(); }

void MonitoredCommunicator::all_gather(const Tensor& in, Tensor& out) { all_gather_async(in, out)->wait(); }

void MonitoredCommunicator::reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) {
  reduce_scatter_async(in, out, op)->wait();
}

void MonitoredCommunicator::broadcast(Tensor& tensor, int root) {
  OpRecord record = describe("broadcast", {&tensor});
  record.peer = root;
  run(std::move(record), [&] { inner_->broadcast(tensor, root); });
}

void MonitoredCommunicator::send(const Tensor& tensor, int peer, int tag) {
  run(describe_p2p("send", tensor, peer, tag), [&] { inner_->send(tensor, peer, tag); });
}

void MonitoredCommunicator::recv(Tensor& tensor, int peer, int tag) {
  run(describe_p2p("recv", tensor, peer, tag), [&] { inner_->recv(tensor, peer, tag); });
}

void MonitoredCommunicator::all_to_all(const Tensor& in, Tensor& out) {
  run(describe("all_to_all", {&in, &out}), [&] { inner_->all_to_all(in, out); });
}

void MonitoredCommunicator::barrier() {
  run(describe("barrier", {}), [&] { inner_->barrier(); });
}

std::unique_ptr<WorkHandle> MonitoredCommunicator::all_reduce_async(Tensor& tensor, ReduceOp op) {
  return run_async(describe_reduction("all_reduce", {&tensor}, op),
                   [&] { return inner_->all_reduce_async(tensor, op); });
}

std::unique_ptr<WorkHandle> MonitoredCommunicator::all_gather_async(const Tensor& in, Tensor& out) {
  return run_async(describe("all_gather", {&in, &out}), [&] { return inner_->all_gather_async(in, out); });
}

std::unique_ptr<WorkHandle> MonitoredCommunicator::reduce_scatter_async(const Tensor& in, Tensor& out, ReduceOp op) {
  return run_async(describe_reduction("reduce_scatter", {&in, &out}, op),
                   [&] { return inner_->reduce_scatter_async(in, out, op); });
}

std::unique_ptr<WorkHandle> MonitoredCommunicator::batch_send_recv(std::vector<P2pOp> ops) {
  std::vector<uint64_t> ids;
  for (const P2pOp& op : ops) {
    ids.push_back(
        recorder_->start(group_, describe_p2p(std::string(p2p_kind_name(op.kind)), op.tensor, op.peer, op.tag)));
  }
  std::unique_ptr<WorkHandle> inner;
  try {
    inner = inner_->batch_send_recv(std::move(ops));
  } catch (const std::exception& error) {
    for (uint64_t id : ids) recorder_->set_state(id, OpState::Failed, error.what());
    throw;
  }
  for (uint64_t id : ids) recorder_->set_state(id, OpState::Scheduled);
  return std::make_unique<MonitoredWork>(std::move(inner), recorder_, std::move(ids));
}

}  // namespace tessera
