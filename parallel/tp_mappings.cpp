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
#include "parallel/communicator.h"

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

// `dim` of x, negative counting from the end, checked against x's rank.
int64_t checked_dim(std::string_view op, const Tensor& x, int64_t dim, const Communicator& tp) {
  const int64_t d = dim < 0 ? dim + x.dim() : dim;
  TS_CHECK(d >= 0 && d < x.dim(), op, " on group '", tp.name(), "' (rank ", tp.rank(), " of ", tp.size(), "): dim ",
           dim, " is out of range for shape ", x.shape());
  return d;
}

// x [..., n, ...] on every rank -> [..., n * size, ...] with rank r's block at [r * n, (r + 1) * n)
// along `dim`. The communicator gathers along dim 0; other dims are reassembled with cat.
Tensor all_gather_along(const Tensor& x, int64_t dim, Communicator& tp) {
  NoGradGuard no_grad;
  Tensor gathered = Tensor::empty({tp.size(), x.numel()}, x.dtype(), x.device());
  tp.all_gather(x.detach().contiguous().reshape({1, x.numel()}), gathered);
  if (dim == 0) {
    Shape shape = x.shape();
    shape[0] *= tp.size();
    return gathered.view(shape);
  }
  std::vector<Tensor> blocks;
  for (int r = 0; r < tp.size(); ++r) blocks.push_back(gathered.narrow(0, r, 1).view(x.shape()));
  return cat(blocks, dim);
}

// Sum over the group of x [..., n * size, ...]; rank r keeps block r along `dim`. The
// communicator scatters along dim 0, so other dims' blocks are first stacked in front.
Tensor reduce_scatter_along(const Tensor& x, int64_t dim, Communicator& tp) {
  NoGradGuard no_grad;
  Tensor blocks = dim == 0 ? x.detach().contiguous() : stack(chunk(x.detach(), tp.size(), dim), 0);
  Shape shape = x.shape();
  shape[static_cast<size_t>(dim)] /= tp.size();
  Tensor out = Tensor::empty({blocks.numel() / tp.size()}, x.dtype(), x.device());
  tp.reduce_scatter(blocks.reshape({blocks.numel()}), out, ReduceOp::Sum);
  return out.view(shape);
}

// This rank's block along `dim`, contiguous.
Tensor own_slice(const Tensor& x, int64_t dim, const Communicator& tp) {
  NoGradGuard no_grad;
  int64_t n = x.size(dim) / tp.size();
  return x.detach().narrow(dim, tp.rank() * n, n).contiguous();
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
  const int64_t dim = x.dim() - 1;
  return record_op("gather_from_tensor_parallel", {x}, all_gather_along(x, dim, tp),
                   [group, dim](const std::vector<Tensor>& g, const std::vector<bool>&) {
                     return std::vector<Tensor>{own_slice(g[0], dim, *group)};
                   });
}

Tensor scatter_to_tensor_parallel(const Tensor& x, Communicator& tp) {
  check_input("scatter_to_tensor_parallel", x, tp);
  const int64_t dim = x.dim() - 1;
  check_divisible("scatter_to_tensor_parallel", x, dim, tp);
  Communicator* group = &tp;
  return record_op("scatter_to_tensor_parallel", {x}, own_slice(x, dim, tp),
                   [group, dim](const std::vector<Tensor>& g, const std::vector<bool>&) {
                     return std::vector<Tensor>{all_gather_along(g[0], dim, *group)};
                   });
}

Tensor gather_from_sequence_parallel(const Tensor& x, Communicator& tp, int64_t dim) {
  check_input("gather_from_sequence_parallel", x, tp);
  dim = checked_dim("gather_from_sequence_parallel", x, dim, tp);
  Communicator* group = &tp;
  return record_op("gather_from_sequence_parallel", {x}, all_gather_along(x, dim, tp),
                   [group, dim](const std::vector<Tensor>& g, const std::vector<bool>&) {
                     return std::vector<Tensor>{reduce_scatter_along(g[0], dim, *group)};
                   });
}

Tensor reduce_scatter_to_sequence_parallel(const Tensor& x, Communicator& tp, int64_t dim) {
  check_input("reduce_scatter_to_sequence_parallel", x, tp);
  dim = checked_dim("reduce_scatter_to_sequence_parallel", x, dim, tp);
  check_divisible("reduce_scatter_to_sequence_parallel", x, dim, tp);
  Communicator* group = &tp;
  return record_op("reduce_scatter_to_sequence_parallel", {x}, reduce_scatter_along(x, dim, tp),
                   [group, dim](const std::vector<Tensor>& g, const std::vector<bool>&) {
                     return std::vector<Tensor>{all_gather_along(g[0], dim, *group)};
                   });
}

}  // namespace tessera
