// MPI backend of Communicator for CPU tensors (see mpi_communicator.h). Every reduction is
// started non-blocking; the blocking form waits on the same handle, so both share one path.
#include "parallel/mpi_communicator.h"

#include <climits>
#include <cstdio>
#include <exception>
#include <functional>
#include <utility>
#include <vector>

#include "parallel/mpi_check.h"

namespace tessera {

namespace {

// Started MPI requests plus the work that makes the output final (divide for Avg, round a
// widened f32 buffer back to bf16/f16, check received sizes), which sees the requests' statuses.
// Holds every buffer MPI reads or writes until the requests are done. A handle destroyed
// unfinished waits and finishes in its destructor, logging (never throwing) on failure.
class MpiWork final : public WorkHandle {
 public:
  using Finish = std::function<void(const std::vector<MPI_Status>&)>;

  MpiWork(std::vector<MPI_Request> requests, std::vector<Tensor> buffers, Finish finish = {})
      : requests_(std::move(requests)),
        statuses_(requests_.size()),
        buffers_(std::move(buffers)),
        finish_(std::move(finish)) {}
  ~MpiWork() override {
    if (done_) return;
    int code = MPI_Waitall(count(), requests_.data(), statuses_.data());
    if (code != MPI_SUCCESS) {
      std::fprintf(stderr, "MpiWork: MPI_Waitall in destructor failed: %s\n", describe_mpi_error(code).c_str());
      return;
    }
    try {
      complete();
    } catch (const std::exception& error) {
      std::fprintf(stderr, "MpiWork: finishing in destructor failed: %s\n", error.what());
    }
  }
  void wait() override {
    if (done_) return;
    TS_MPI_CHECK(MPI_Waitall(count(), requests_.data(), statuses_.data()));
    complete();
  }
  bool is_completed() override {
    if (done_) return true;
    int flag = 0;
    TS_MPI_CHECK(MPI_Testall(count(), requests_.data(), &flag, statuses_.data()));
    if (flag) complete();
    return done_;
  }

 private:
  int count() const { return static_cast<int>(requests_.size()); }
  void complete() {
    done_ = true;
    if (finish_) finish_(statuses_);
    buffers_.clear();
  }

  std::vector<MPI_Request> requests_;
  std::vector<MPI_Status> statuses_;
  std::vector<Tensor> buffers_;
  Finish finish_;
  bool done_ = false;
};

std::string where(const Communicator& comm, std::string_view op) {
  return detail::concat(op, " on group '", comm.name(), "' (rank ", comm.rank(), " of ", comm.size(), ")");
}

// MPI element count; MPI counts are int.
int mpi_count(const Communicator& comm, std::string_view op, int64_t count) {
  TS_CHECK(count <= INT_MAX, where(comm, op), ": ", count, " elements exceed MPI's int count limit; split the tensor");
  return static_cast<int>(count);
}

// The dtype a reduction runs in: bf16/f16 widen to f32.
DType reduction_dtype(const Communicator& comm, std::string_view op, DType dtype, ReduceOp reduce) {
  TS_CHECK(dtype != DType::Bool, where(comm, op), ": cannot reduce a bool tensor");
  TS_CHECK(reduce != ReduceOp::Avg || is_floating(dtype), where(comm, op), ": avg needs a floating dtype, got ",
           dtype_name(dtype), "; use sum and divide");
  return (dtype == DType::BF16 || dtype == DType::F16) ? DType::F32 : dtype;
}

MPI_Datatype mpi_datatype(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return MPI_FLOAT;
    case DType::F64:
      return MPI_DOUBLE;
    case DType::I32:
      return MPI_INT32_T;
    case DType::I64:
      return MPI_INT64_T;
    default:
      break;
  }
  TS_CHECK(false, "mpi_datatype: no MPI reduction type for ", dtype_name(dtype));
  return MPI_DATATYPE_NULL;  // unreachable
}

MPI_Op mpi_op(ReduceOp op) { return op == ReduceOp::Max ? MPI_MAX : MPI_SUM; }

// Runs after the reduction into `reduced`: Avg divides, and a widened buffer is rounded back
// into `out`.
MpiWork::Finish finish_reduction(Tensor reduced, Tensor out, ReduceOp op, int size) {
  return [reduced, out, op, size](const std::vector<MPI_Status>&) mutable {
    if (op == ReduceOp::Avg) reduced.mul_(1.0 / size);
    if (!reduced.is_same(out)) out.copy_(reduced);
  };
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm parent, std::string name) : name_(std::move(name)) {
  TS_MPI_CHECK(MPI_Comm_dup(parent, &comm_));
  TS_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  TS_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  TS_MPI_CHECK(MPI_Comm_size(comm_, &size_));
}

MpiCommunicator::MpiCommunicator(Adopt, MPI_Comm owned, std::string name) : comm_(owned), name_(std::move(name)) {
  TS_MPI_CHECK(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN));
  TS_MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
  TS_MPI_CHECK(MPI_Comm_size(comm_, &size_));
}

MpiCommunicator::~MpiCommunicator() {
  if (comm_ == MPI_COMM_NULL) return;
  int code = MPI_Comm_free(&comm_);
  if (code != MPI_SUCCESS) {
    std::fprintf(stderr, "MpiCommunicator '%s': MPI_Comm_free failed: %s\n", name_.c_str(),
                 describe_mpi_error(code).c_str());
  }
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key, std::string name) const {
  TS_CHECK(color >= 0, where(*this, "split"), ": color must be >= 0, got ", color);
  MPI_Comm child = MPI_COMM_NULL;
  TS_MPI_CHECK(MPI_Comm_split(comm_, color, key, &child));
  return std::unique_ptr<Communicator>(new MpiCommunicator(Adopt{}, child, std::move(name)));
}

std::unique_ptr<WorkHandle> MpiCommunicator::all_reduce_async(Tensor& tensor, ReduceOp op) {
  check_comm_tensor(*this, "all_reduce", tensor, "input/output");
  DType dtype = reduction_dtype(*this, "all_reduce", tensor.dtype(), op);
  Tensor reduced = dtype == tensor.dtype() ? tensor : tensor.to(dtype);
  MPI_Request request = MPI_REQUEST_NULL;
  TS_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, reduced.data_ptr(), mpi_count(*this, "all_reduce", reduced.numel()),
                              mpi_datatype(dtype), mpi_op(op), comm_, &request));
  return std::make_unique<MpiWork>(std::vector<MPI_Request>{request}, std::vector<Tensor>{reduced, tensor},
                                   finish_reduction(reduced, tensor, op, size_));
}

std::unique_ptr<WorkHandle> MpiCommunicator::all_gather_async(const Tensor& in, Tensor& out) {
  check_all_gather_args(*this, "all_gather", in, out);
  int bytes = mpi_count(*this, "all_gather", in.numel() * static_cast<int64_t>(dtype_size(in.dtype())));
  MPI_Request request = MPI_REQUEST_NULL;
  TS_MPI_CHECK(MPI_Iallgather(in.data_ptr(), bytes, MPI_BYTE, out.data_ptr(), bytes, MPI_BYTE, comm_, &request));
  return std::make_unique<MpiWork>(std::vector<MPI_Request>{request}, std::vector<Tensor>{in, out});
}

std::unique_ptr<WorkHandle> MpiCommunicator::reduce_scatter_async(const Tensor& in, Tensor& out, ReduceOp op) {
  check_reduce_scatter_args(*this, "reduce_scatter", in, out);
  DType dtype = reduction_dtype(*this, "reduce_scatter", in.dtype(), op);
  Tensor send = dtype == in.dtype() ? in : in.to(dtype);
  Tensor reduced = dtype == out.dtype() ? out : Tensor::empty(out.shape(), dtype);
  MPI_Request request = MPI_REQUEST_NULL;
  TS_MPI_CHECK(MPI_Ireduce_scatter_block(send.data_ptr(), reduced.data_ptr(),
                                         mpi_count(*this, "reduce_scatter", reduced.numel()), mpi_datatype(dtype),
                                         mpi_op(op), comm_, &request));
  return std::make_unique<MpiWork>(std::vector<MPI_Request>{request}, std::vector<Tensor>{send, reduced, out},
                                   finish_reduction(reduced, out, op, size_));
}

void MpiCommunicator::all_reduce(Tensor& tensor, ReduceOp op) { all_reduce_async(tensor, op)->wait(); }

void MpiCommunicator::all_gather(const Tensor& in, Tensor& out) { all_gather_async(in, out)->wait(); }

void MpiCommunicator::reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) {
  reduce_scatter_async(in, out, op)->wait();
}

void MpiCommunicator::broadcast(Tensor& tensor, int root) {
  check_comm_tensor(*this, "broadcast", tensor, "input/output");
  check_peer(*this, "broadcast", root);
  int bytes = mpi_count(*this, "broadcast", tensor.numel() * static_cast<int64_t>(dtype_size(tensor.dtype())));
  TS_MPI_CHECK(MPI_Bcast(tensor.data_ptr(), bytes, MPI_BYTE, root, comm_));
}

void MpiCommunicator::send(const Tensor& tensor, int peer, int tag) {
  check_comm_tensor(*this, "send", tensor, "input");
  check_peer(*this, "send", peer);
  int bytes = mpi_count(*this, "send", tensor.numel() * static_cast<int64_t>(dtype_size(tensor.dtype())));
  TS_MPI_CHECK(MPI_Send(tensor.data_ptr(), bytes, MPI_BYTE, peer, tag, comm_));
}

void MpiCommunicator::recv(Tensor& tensor, int peer, int tag) {
  check_comm_tensor(*this, "recv", tensor, "output");
  check_peer(*this, "recv", peer);
  int bytes = mpi_count(*this, "recv", tensor.numel() * static_cast<int64_t>(dtype_size(tensor.dtype())));
  MPI_Status status;
  TS_MPI_CHECK(MPI_Recv(tensor.data_ptr(), bytes, MPI_BYTE, peer, tag, comm_, &status));
  int received = 0;
  TS_MPI_CHECK(MPI_Get_count(&status, MPI_BYTE, &received));
  TS_CHECK(received == bytes, where(*this, "recv"), ": expected ", bytes, " bytes from rank ", peer, " (tag ", tag,
           "), received ", received, "; sender and receiver shapes differ");
}

void MpiCommunicator::all_to_all(const Tensor& in, Tensor& out) {
  check_all_to_all_args(*this, "all_to_all", in, out);
  int block_bytes = mpi_count(*this, "all_to_all", in.numel() / size_ * static_cast<int64_t>(dtype_size(in.dtype())));
  TS_MPI_CHECK(MPI_Alltoall(in.data_ptr(), block_bytes, MPI_BYTE, out.data_ptr(), block_bytes, MPI_BYTE, comm_));
}

void MpiCommunicator::barrier() { TS_MPI_CHECK(MPI_Barrier(comm_)); }

std::unique_ptr<WorkHandle> MpiCommunicator::batch_send_recv(std::vector<P2pOp> ops) {
  check_p2p_ops(*this, "batch_send_recv", ops);
  struct Expected {  // what a receive must get, checked once it is done
    size_t index;
    int bytes, peer, tag;
  };
  std::vector<MPI_Request> requests(ops.size(), MPI_REQUEST_NULL);
  std::vector<Tensor> buffers;
  std::vector<Expected> receives;
  for (size_t i = 0; i < ops.size(); ++i) {
    const P2pOp& op = ops[i];
    const bool sending = op.kind == P2pOp::Kind::Send;
    int bytes =
        mpi_count(*this, "batch_send_recv", op.tensor.numel() * static_cast<int64_t>(dtype_size(op.tensor.dtype())));
    int code = sending ? MPI_Isend(op.tensor.data_ptr(), bytes, MPI_BYTE, op.peer, op.tag, comm_, &requests[i])
                       : MPI_Irecv(op.tensor.data_ptr(), bytes, MPI_BYTE, op.peer, op.tag, comm_, &requests[i]);
    if (code != MPI_SUCCESS) {
      // Finish what was posted (its buffers are alive in `ops`) before reporting the failure.
      MPI_Waitall(static_cast<int>(i), requests.data(), MPI_STATUSES_IGNORE);
      TS_CHECK(false, where(*this, "batch_send_recv"), ": ", sending ? "MPI_Isend" : "MPI_Irecv", " of ",
               p2p_kind_name(op.kind), " ", i, " (peer ", op.peer, ", tag ", op.tag,
               ") failed: ", describe_mpi_error(code));
    }
    buffers.push_back(op.tensor);
    if (!sending) receives.push_back({i, bytes, op.peer, op.tag});
  }
  auto check_sizes = [receives, where_text = where(*this, "batch_send_recv")](const std::vector<MPI_Status>& statuses) {
    for (const Expected& expected : receives) {
      int received = 0;
      TS_MPI_CHECK(MPI_Get_count(&statuses[expected.index], MPI_BYTE, &received));
      TS_CHECK(received == expected.bytes, where_text, ": recv ", expected.index, " expected ", expected.bytes,
               " bytes from rank ", expected.peer, " (tag ", expected.tag, "), received ", received,
               "; sender and receiver shapes differ");
    }
  };
  return std::make_unique<MpiWork>(std::move(requests), std::move(buffers), std::move(check_sizes));
}

}  // namespace tessera
