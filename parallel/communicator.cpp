// Argument checks shared by every Communicator backend (see communicator.h).
#include "parallel/communicator.h"

namespace tessera {

std::string_view reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::Sum:
      return "sum";
    case ReduceOp::Avg:
      return "avg";
    case ReduceOp::Max:
      return "max";
  }
  return "unknown";
}

namespace {

std::string where(const Communicator& comm, std::string_view op) {
  return detail::concat(op, " on group '", comm.name(), "' (rank ", comm.rank(), " of ", comm.size(), ")");
}

Shape with_dim0(Shape shape, int64_t dim0) {
  shape[0] = dim0;
  return shape;
}

}  // namespace

void check_comm_tensor(const Communicator& comm, std::string_view op, const Tensor& tensor, std::string_view role) {
  TS_CHECK(tensor.defined(), where(comm, op), ": ", role, " tensor is undefined");
  TS_CHECK(tensor.is_contiguous(), where(comm, op), ": ", role, " tensor of shape ", tensor.shape(),
           " is not contiguous; call .contiguous() first");
  TS_CHECK(tensor.device() == comm.device(), where(comm, op), ": ", role, " tensor is on ", tensor.device().str(),
           " but this communicator works on ", comm.device().str());
}

void check_all_gather_args(const Communicator& comm, std::string_view op, const Tensor& in, const Tensor& out) {
  check_comm_tensor(comm, op, in, "input");
  check_comm_tensor(comm, op, out, "output");
  TS_CHECK(in.dim() >= 1, where(comm, op), ": input must have at least one dimension");
  TS_CHECK(in.dtype() == out.dtype(), where(comm, op), ": input is ", dtype_name(in.dtype()), " but output is ",
           dtype_name(out.dtype()));
  Shape expected = with_dim0(in.shape(), in.size(0) * comm.size());
  TS_CHECK(out.shape() == expected, where(comm, op), ": output shape ", out.shape(), " must be the input shape ",
           in.shape(), " with dim 0 times the group size, i.e. ", expected);
}

void check_reduce_scatter_args(const Communicator& comm, std::string_view op, const Tensor& in, const Tensor& out) {
  check_comm_tensor(comm, op, in, "input");
  check_comm_tensor(comm, op, out, "output");
  TS_CHECK(in.dim() >= 1, where(comm, op), ": input must have at least one dimension");
  TS_CHECK(in.dtype() == out.dtype(), where(comm, op), ": input is ", dtype_name(in.dtype()), " but output is ",
           dtype_name(out.dtype()));
  TS_CHECK(in.size(0) % comm.size() == 0, where(comm, op), ": input dim 0 (", in.size(0),
           ") is not divisible by the group size ", comm.size());
  Shape expected = with_dim0(in.shape(), in.size(0) / comm.size());
  TS_CHECK(out.shape() == expected, where(comm, op), ": output shape ", out.shape(), " must be the input shape ",
           in.shape(), " with dim 0 divided by the group size, i.e. ", expected);
}

void check_all_to_all_args(const Communicator& comm, std::string_view op, const Tensor& in, const Tensor& out) {
  check_comm_tensor(comm, op, in, "input");
  check_comm_tensor(comm, op, out, "output");
  TS_CHECK(in.dim() >= 1, where(comm, op), ": input must have at least one dimension");
  TS_CHECK(in.dtype() == out.dtype() && in.shape() == out.shape(), where(comm, op), ": input (", in.shape(), ", ",
           dtype_name(in.dtype()), ") and output (", out.shape(), ", ", dtype_name(out.dtype()),
           ") must have the same shape and dtype");
  TS_CHECK(in.size(0) % comm.size() == 0, where(comm, op), ": dim 0 (", in.size(0),
           ") is not divisible by the group size ", comm.size());
}

void check_peer(const Communicator& comm, std::string_view op, int peer) {
  TS_CHECK(peer >= 0 && peer < comm.size(), where(comm, op), ": peer/root rank ", peer, " is outside the group [0, ",
           comm.size(), ")");
}

std::string_view p2p_kind_name(P2pOp::Kind kind) { return kind == P2pOp::Kind::Send ? "send" : "recv"; }

void check_p2p_ops(const Communicator& comm, std::string_view op, const std::vector<P2pOp>& ops) {
  for (size_t i = 0; i < ops.size(); ++i) {
    std::string role = detail::concat(p2p_kind_name(ops[i].kind), " ", i);
    check_comm_tensor(comm, op, ops[i].tensor, role);
    TS_CHECK(ops[i].peer >= 0 && ops[i].peer < comm.size(), where(comm, op), ": ", role, " names peer rank ",
             ops[i].peer, ", outside the group [0, ", comm.size(), ")");
  }
}

}  // namespace tessera
