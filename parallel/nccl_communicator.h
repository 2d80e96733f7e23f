// NcclCommunicator: the Communicator backend for CUDA tensors over NCCL. Exists only in CUDA
// builds (TESSERA_WITH_NCCL is defined then); code that may run without it guards its use with
// `#ifdef TESSERA_WITH_NCCL`.
//
// Construction (both on GPU `device_index`, which must be visible):
//   - NcclCommunicator(bootstrap, device_index): over the ranks of `bootstrap`, a CPU
//     communicator such as the world MpiCommunicator (same ranks, same order, same name);
//     collective over it. The ranks first agree that each can use its GPU (else every rank
//     throws, none waits forever), then rank 0 creates the NCCL unique id and broadcasts it.
//     The launcher passes LaunchContext::local_rank as device_index (one GPU per rank).
//   - NcclCommunicator(device_index, name): a world of one rank and no MPI, for one-GPU runs
//     and the GPU tests.
//   split() makes child communicators from unique ids exchanged over the parent (collective over
//   the parent; see nccl_communicator.cpp for why not ncclCommSplit).
//
// Streams: every operation runs on this communicator's own communication stream. It first
// waits (on the GPU, through an event) for the work already queued on the device's compute
// stream (CudaBackend::stream()), so it reads its inputs after the kernels that write them; the
// blocking forms then make the compute stream wait for the operation, so later kernels and
// host reads (which go through the compute stream) see the result without a host sync.
// A *_async handle's wait() makes the compute stream wait; is_completed() polls the operation's
// event. Handles hold the tensors they use until then, so the caching allocator cannot hand
// their memory to another tensor while NCCL still reads or writes it. barrier() additionally
// blocks the host until the operation has finished on every rank.
//
// Data: reductions (sum, avg through ncclAvg, max) in f32, f64, bf16, f16, i32, i64; 16-bit
// floats are reduced by NCCL in their own type (each step rounds), unlike MpiCommunicator,
// which widens to f32; avg needs a floating dtype. Data movement (all_gather, broadcast,
// send/recv, all_to_all) copies raw bytes, so every dtype works. NCCL has no message tags:
// send/recv between two ranks match in the order they are issued, and `tag` is ignored; a
// size mismatch between sender and receiver is not detected.
//
// Threads: operations are issued from one thread. abort() may be called from any other thread
// (a watchdog): it calls ncclCommAbort, which makes operations stuck on the GPU (a dead or
// diverged peer) return, and every later operation, and wait() on a handle issued before,
// throws an Error saying the communicator was aborted. This is safe because the communicator
// is created non-blocking (NCCL's config.blocking = 0): no NCCL call holds the host while it
// waits for peers; this class polls instead, and abort() waits at most for one call in
// progress on the other thread. Children made by split() are separate communicators with their
// own abort().
//
// Errors name the op, the group and the rank, the NCCL call, ncclGetErrorString and NCCL's
// last error text.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace tessera {

class NcclCommunicator final : public Communicator {
 public:
  // Over the ranks of `bootstrap` (a CPU communicator); collective over it.
  NcclCommunicator(Communicator& bootstrap, int device_index);
  // A world of one rank, no MPI needed.
  explicit NcclCommunicator(int device_index, std::string name = "world");
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override;
  int size() const override;
  const std::string& name() const override;
  Device device() const override;

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
  // One NCCL group of ncclSend/ncclRecv in `ops` order (oneself included). Tags are ignored:
  // operations between two ranks match in the order they are posted (see P2pOp).
  std::unique_ptr<WorkHandle> batch_send_recv(std::vector<P2pOp> ops) override;

  // ncclCommAbort; safe from any thread, idempotent, never throws (see the header comment).
  void abort();
  bool aborted() const;

  // The version of the NCCL library loaded at run time, e.g. "2.28.9".
  static std::string nccl_version();

  // The NCCL communicator, its stream and its abort flag; shared with the work handles, which
  // keep it alive while their operations are in flight.
  struct State;

 private:
  explicit NcclCommunicator(std::shared_ptr<State> state);

  std::shared_ptr<State> state_;
};

}  // namespace tessera
