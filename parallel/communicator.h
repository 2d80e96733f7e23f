// Communicator: the backend-neutral seam for collective and point-to-point communication.
// MpiCommunicator (CPU tensors) implements it today; the NCCL backend (CUDA tensors) implements
// the same interface. A communicator is one group of ranks; its rank() and size() count within
// the group. Conventions for every operation:
//   - tensors are contiguous, on the communicator's device, same dtype on every rank;
//   - "dim 0 split" cuts a tensor into size() equal blocks along dim 0 (dim 0 must divide);
//   - all_gather's out is the dim-0 concatenation of every rank's in, in rank order;
//   - reduce_scatter's in is split along dim 0, rank r receives the reduced r-th block;
//   - all_to_all sends in's r-th dim-0 block to rank r and stores block q received from rank q
//     at out's q-th block.
// The *_async variants return a WorkHandle; the output is valid only after wait().
// batch_send_recv posts several sends and receives at once (Megatron's batch_isend_irecv, one
// NCCL group) and returns one handle for all of them; see P2pOp.
// Every operation checks its arguments and throws tessera::Error naming the op, the group and
// the rank. Communicators are passed explicitly; there is no global group.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace tessera {

enum class ReduceOp { Sum, Avg, Max };

std::string_view reduce_op_name(ReduceOp op);

// An operation in flight. wait() blocks until it is done and its output is final (idempotent);
// is_completed() polls without blocking. Destroying an unfinished handle waits for it (and
// logs instead of throwing), so the output is final either way.
class WorkHandle {
 public:
  virtual ~WorkHandle() = default;
  virtual void wait() = 0;
  virtual bool is_completed() = 0;
  // For a stream-ordered backend (NCCL), whose wait() only orders the compute stream after the
  // operation: a thread-safe, non-blocking query of whether the device has finished it (the flight
  // recorder polls it, so that a hang inside the operation shows as an operation in flight).
  // Empty where wait() returns only once the operation is done (MPI).
  virtual std::function<bool()> device_completion() const { return {}; }
};

// One send or receive of a batch_send_recv. `tensor` is read (Send) or written (Recv); it is
// contiguous and on the communicator's device, and both sides agree on its byte size. Operations
// between the same two ranks match in the order they are posted: with MPI per `tag` (so tags
// keep streams apart, e.g. activations and gradients), with NCCL, which has no tags, over all of
// them (the caller then posts in the same order on both sides).
struct P2pOp {
  enum class Kind { Send, Recv };
  Kind kind = Kind::Send;
  Tensor tensor;
  int peer = 0;  // rank in the group; oneself is allowed (the batch's own receive takes it)
  int tag = 0;

  static P2pOp send(Tensor tensor, int peer, int tag = 0) { return {Kind::Send, std::move(tensor), peer, tag}; }
  static P2pOp recv(Tensor tensor, int peer, int tag = 0) { return {Kind::Recv, std::move(tensor), peer, tag}; }
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Name of the group for error messages ("world", "tp", "dp", ...).
  virtual const std::string& name() const = 0;
  // The device this communicator's tensors must live on.
  virtual Device device() const = 0;

  // A new communicator over the ranks that pass the same `color`, ordered by `key`
  // (collective over this communicator; every rank must call it).
  virtual std::unique_ptr<Communicator> split(int color, int key, std::string name) const = 0;

  virtual void all_reduce(Tensor& tensor, ReduceOp op) = 0;
  virtual void all_gather(const Tensor& in, Tensor& out) = 0;
  virtual void reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) = 0;
  virtual void broadcast(Tensor& tensor, int root) = 0;
  virtual void send(const Tensor& tensor, int peer, int tag) = 0;
  virtual void recv(Tensor& tensor, int peer, int tag) = 0;
  virtual void all_to_all(const Tensor& in, Tensor& out) = 0;
  virtual void barrier() = 0;

  virtual std::unique_ptr<WorkHandle> all_reduce_async(Tensor& tensor, ReduceOp op) = 0;
  virtual std::unique_ptr<WorkHandle> all_gather_async(const Tensor& in, Tensor& out) = 0;
  virtual std::unique_ptr<WorkHandle> reduce_scatter_async(const Tensor& in, Tensor& out, ReduceOp op) = 0;
  // Posts every operation of `ops` before waiting for any, so an exchange in both directions
  // (each rank sends to and receives from the other) cannot deadlock; the received tensors are
  // final after wait(). The handle keeps the tensors alive until then. An empty batch is done at
  // once. Only the ranks named as peers take part (not collective).
  virtual std::unique_ptr<WorkHandle> batch_send_recv(std::vector<P2pOp> ops) = 0;
};

// ---- argument checks shared by every backend (throw tessera::Error naming op, group, rank) ----

// Defined, contiguous and on the communicator's device.
void check_comm_tensor(const Communicator& comm, std::string_view op, const Tensor& tensor, std::string_view role);
// all_gather: out has in's dtype and shape with dim 0 multiplied by size().
void check_all_gather_args(const Communicator& comm, std::string_view op, const Tensor& in, const Tensor& out);
// reduce_scatter: in's dim 0 divisible by size(); out has in's dtype and shape with dim 0
// divided by size().
void check_reduce_scatter_args(const Communicator& comm, std::string_view op, const Tensor& in, const Tensor& out);
// all_to_all: in and out same dtype and shape, dim 0 divisible by size().
void check_all_to_all_args(const Communicator& comm, std::string_view op, const Tensor& in, const Tensor& out);
// A peer or root rank in [0, size()).
void check_peer(const Communicator& comm, std::string_view op, int peer);
// Every operation of a batch: its tensor (check_comm_tensor, named "send i" / "recv i") and peer.
void check_p2p_ops(const Communicator& comm, std::string_view op, const std::vector<P2pOp>& ops);
// "send" or "recv"
std::string_view p2p_kind_name(P2pOp::Kind kind);

}  // namespace tessera
