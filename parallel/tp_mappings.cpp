// The tensor- and sequence-parallel mappings (see tp_mappings.h). Each forward runs its
// collective on detached tensors and records one node whose backward runs the conjugate
// collective on a copy of the incoming gradient (never in place: the gradient may be shared).
// Backward closures hold a pointer to the communicator, which must outlive the graph.
#include "parallel/tp_mappings.h"

#include <string_view>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/check.h"
#include "core/ops/shape_ops.h"

namespace tessera {

namespace {

void check_input(std::string_view op, const Tensor& x, const Communicator& tp) {
  TS_CHECK(x.defined() && x.dim() >= 1, op, " on group '", tp.name(), "' (rank ", tp.rank(), " of ", tp.size(),
           "): needs a defined tensor with at least one dim");
  TS_CHECK(x.device() == tp.device(), op, " on group '", tp.name(), "' (rank ", tp.rank(), " of ", tp.size(),
           "): input is on ", x.device(), " but the communicator works on ", tp.device(), "; move it there first");
}

void check_divisible(std::string_view op, const Tensor& x, int64_t dim, const Communicator& tp) {
  TS_CHECK(x.size(dim) % tp.size() == 0, op, " on group '", tp.name(), "' (rank ", tp.rank(), " of ", tp.size(),
           "): dim ", dim, " of shape ", x.shape(), " (", x.size(dim), ") does not divide by the group size ",
           tp.size(), "; pad it to a multiple of ", tp.size());
}

// Sum over the group into a fresh tensor.
Tensor all_reduce_sum(const Tensor& x, Communicator& tp) {
  NoGradGuard no_grad;
  Tensor out = x.detach().clone();
  tp.all_reduce(out, ReduceOp::Sum);
  return out;
}

// [..., n] on every rank -> [..., n * size] with rank r's block at [r * n, (r + 1) * n).
Tensor all_gather_last_dim(const Tensor& x, Communicator& tp) {
  NoGradGuard no_grad;
  Tensor in = x.detach().contiguous().reshape({1, x.numel()});
  Tensor gathered = Tensor::empty({tp.size(), x.numel()}, x.dtype(), x.device());
  tp.all_gather(in, gathered);
  std::vector<Tensor> blocks;
  for (int r = 0; r < tp.size(); ++r) blocks.push_back(gathered.narrow(0, r, 1).view(x.shape()));
  return cat(blocks, x.dim() - 1);
}

// This rank's block of the last dim, contiguous.
Tensor own_last_dim_slice(const Tensor& x, const Communicator& tp) {
  NoGradGuard no_grad;
  int64_t n = x.size(x.dim() - 1) / tp.size();
  return x.detach().narrow(x.dim() - 1, tp.rank() * n, n).contiguous();
}

Tensor all_gather_dim0(const Tensor& x, Communicator& tp) {
  NoGradGuard no_grad;
  Shape shape = x.shape();
  shape[0] *= tp.size();
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  tp.all_gather(x.detach().contiguous(), out);
  return out;
}

Tensor reduce_scatter_dim0(const Tensor& x, Communicator& tp) {
  NoGradGuard no_grad;
  Shape shape = x.shape();
  shape[0] /= tp.size();
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  tp.reduce_scatter(x.detach().contiguous(), out, ReduceOp::Sum);
  return out;
}

}  // namespace

Tensor copy_to_tensor_parallel(const Tensor& x, Communicator& tp) {
  check_input("copy_to_tensor_parallel", x, tp);
  Communicator* group = &tp;
  return record_op("copy_to_tensor_parallel", {x}, x.detach(),
                   [group](const std::vector<Tensor>& g, const std::vector<bool>&) {
                     return std::vector<Tensor>{all_reduce_sum(g[0], *group)};
                   });
}

Tensor reduce_from_tensor_parallel(const Tensor& x, Communicator& tp) {
  check_input("reduce_from_tensor_parallel", x, tp);
  return record_op("reduce_from_tensor_parallel", {x}, all_reduce_sum(x, tp),
                   [](const std::vector<Tensor>& g, const std::vector<bool>&) { return std::vector<Tensor>{g[0]}; });
}

Tensor gather_from_tensor_parallel(const Tensor& x, Communicator& tp) {
  check_input("gather_from_tensor_parallel", x, tp);
  Communicator* group = &tp;
  return record_op("gather_from_tensor_parallel", {x}, all_gather_last_dim(x, tp),
                   [group](const std::vector<Tensor>& g, const std::vector<bool>&) {
                     return std::vector<Tensor>{own_last_dim_slice(g[0], *group)};
                   });
}

Tensor scatter_to_tensor_parallel(const Tensor& x, Communicator& tp) {
  check_input("scatter_to_tensor_parallel", x, tp);
  check_divisible("scatter_to_tensor_parallel", x, x.dim() - 1, tp);
  Communicator* group = &tp;
  return record_op("scatter_to_tensor_parallel", {x}, own_last_dim_slice(x, tp),
                   [group](const std::vector<Tensor>& g, const std::vector<bool>&) {
                     return std::vector<Tensor>{all_gather_last_dim(g[0], *group)};
                   });
}

Tensor gather_from_sequence_parallel(const Tensor& x, Communicator& tp) {
  check_input("gather_from_sequence_parallel", x, tp);
  Communicator* group = &tp;
  return record_op("gather_from_sequence_parallel", {x}, all_gather_dim0(x, tp),
                   [group](const std::vector<Tensor>& g, const std::vector<bool>&) {
                     return std::vector<Tensor>{reduce_scatter_dim0(g[0], *group)};
                   });
}

Tensor reduce_scatter_to_sequence_parallel(const Tensor& x, Communicator& tp) {
  check_input("reduce_scatter_to_sequence_parallel", x, tp);
  check_divisible("reduce_scatter_to_sequence_parallel", x, 0, tp);
  Communicator* group = &tp;
  return record_op("reduce_scatter_to_sequence_parallel", {x}, reduce_scatter_dim0(x, tp),
                   [group](const std::vector<Tensor>& g, const std::vector<bool>&) {
                     return std::vector<Tensor>{all_gather_dim0(g[0], *group)};
                   });
}

}  // namespace tessera
