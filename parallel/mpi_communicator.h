// MpiCommunicator: the Communicator backend for CPU tensors over MPI. It owns its MPI
// communicator (a duplicate of the parent, or a split of it) and frees it at destruction, so
// its messages never mix with another group's. Reductions: f32, f64, i32, i64 natively;
// bf16/f16 are widened to f32, reduced, and rounded back once; Avg = Sum then divide by
// size() (floating dtypes only). Data movement (gather, broadcast, send/recv, batches, all_to_all)
// copies raw bytes, so every dtype works. Errors return from MPI (MPI_ERRORS_RETURN) and are
// thrown by TS_MPI_CHECK with the call and the rank.
#pragma once

#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace tessera {

class MpiCommunicator final : public Communicator {
 public:
  // Duplicates `parent` (e.g. MPI_COMM_WORLD); collective over `parent`.
  MpiCommunicator(MPI_Comm parent, std::string name);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  Device device() const override { return Device::cpu(); }
  MPI_Comm handle() const { return comm_; }

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
  // MPI_Isend/MPI_Irecv per operation, MPI_Waitall/MPI_Testall on the handle; a receive that
  // gets fewer bytes than its tensor holds throws at wait() (sender and receiver shapes differ).
  std::unique_ptr<WorkHandle> batch_send_recv(std::vector<P2pOp> ops) override;

 private:
  struct Adopt {};
  MpiCommunicator(Adopt, MPI_Comm owned, std::string name);

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::string name_;
};

}  // namespace tessera
