// MonitoredCommunicator: a Communicator that forwards every operation to another one (MPI or
// NCCL, through the virtual interface only) and records it in a FlightRecorder: an entry when
// the call starts, Completed or Failed when it returns or throws; an async call is Scheduled
// once its handle is returned and Completed when wait() or is_completed() sees it done (or its
// handle is destroyed). split() returns a monitored child that records into the same recorder,
// so wrapping the world communicator monitors every group made from it (ProcessGroups, ...).
//
// The recorder knows each group by its members' global ranks: creating a MonitoredCommunicator
// (the constructor, and split) all-gathers the recorder's global rank over the new group, so
// both are collective over it.
//
// What Completed means is the backend's: MPI returns when the data has moved; a stream-ordered
// backend (NCCL) returns once the operation is queued, so there a GPU-side hang shows as the
// rank's next host-blocking call (barrier, a host read) never returning, and its dump's last
// entries say which collectives were queued last.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/flight_recorder.h"

namespace tessera {

class MonitoredCommunicator final : public Communicator {
 public:
  // Collective over `inner`.
  MonitoredCommunicator(std::unique_ptr<Communicator> inner, std::shared_ptr<FlightRecorder> recorder);

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  const std::string& name() const override { return inner_->name(); }
  Device device() const override { return inner_->device(); }

  Communicator& inner() const { return *inner_; }
  const std::shared_ptr<FlightRecorder>& recorder() const { return recorder_; }

  std::unique_ptr<Communicator> split(int color, int key, std::string name) const override;

  void all_reduce(Tensor& tensor, ReduceOp op) override;
  void all_gather(const Tensor& in, Tensor& out) override;
  void reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) override;
  void broadcast(Tensor& tensor, int root) override;
  void send(const Tensor& tensor, int peer, int tag) override;
  void recv(Tensor& tensor, int peer, int tag) override;
  void all_to_all(const Tensor& in, Tensor& out) override;
  void barrier() override;

  std::unique_ptr<WorkHandle> all_reduce_async(Tensor& tensor, ReduceOp op) override;
  std::unique_ptr<WorkHandle> all_gather_async(const Tensor& in, Tensor& out) override;
  std::unique_ptr<WorkHandle> reduce_scatter_async(const Tensor& in, Tensor& out, ReduceOp op) override;
  // One "send"/"recv" entry per operation, in batch order, each numbered per peer like a single
  // send/recv; all Scheduled together and Completed when the batch's handle is seen done.
  std::unique_ptr<WorkHandle> batch_send_recv(std::vector<P2pOp> ops) override;

 private:
  // Runs `call` between start and Completed/Failed records.
  template <typename Call>
  void run(OpRecord record, Call&& call) const;
  template <typename Call>
  std::unique_ptr<WorkHandle> run_async(OpRecord record, Call&& call);

  std::unique_ptr<Communicator> inner_;
  std::shared_ptr<FlightRecorder> recorder_;
  int group_ = 0;  // index in the recorder's group table
};

}  // namespace tessera
