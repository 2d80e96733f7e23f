// Reductions move the reduced dims last, make the tensor [rows, reduced] contiguous and run
// the row-reduction kernel.
#include "core/ops/reduce.h"

#include <algorithm>

#include "core/autograd/node.h"
#include "core/backend.h"
#include "core/ops/checks.h"
#include "core/ops/elementwise.h"

namespace tessera {

namespace {

struct ReducePlan {
  std::vector<int64_t> permutation;  // kept dims, then reduced dims
  Shape kept_shape;                  // output shape without keepdim
  Shape keepdim_shape;               // output shape with reduced dims as 1
  int64_t rows = 1;
  int64_t reduced = 1;
};

ReducePlan plan_reduction(const Tensor& x, const std::vector<int64_t>& dims, std::string_view op) {
  std::vector<bool> is_reduced(static_cast<size_t>(x.dim()), dims.empty());
  for (int64_t d : dims) {
    size_t nd = static_cast<size_t>(normalize_dim(d, x.dim(), op));
    TS_CHECK(!is_reduced[nd], op, ": dim ", d, " listed twice");
    is_reduced[nd] = true;
  }
  ReducePlan plan;
  std::vector<int64_t> reduced_dims;
  for (int64_t i = 0; i < x.dim(); ++i) {
    int64_t extent = x.shape()[static_cast<size_t>(i)];
    if (is_reduced[static_cast<size_t>(i)]) {
      reduced_dims.push_back(i);
      plan.reduced *= extent;
      plan.keepdim_shape.push_back(1);
    } else {
      plan.permutation.push_back(i);
      plan.kept_shape.push_back(extent);
      plan.keepdim_shape.push_back(extent);
      plan.rows *= extent;
    }
  }
  plan.permutation.insert(plan.permutation.end(), reduced_dims.begin(), reduced_dims.end());
  return plan;
}

// Runs the row kernel; returns an untracked tensor of the kept (or keepdim) shape.
Tensor reduce_forward(RowReduceOp op, const Tensor& x, const ReducePlan& plan, bool keepdim) {
  Tensor rows = x.detach().permute(plan.permutation).contiguous().view({plan.rows, plan.reduced});
  Tensor out = Tensor::empty({plan.rows}, x.dtype(), x.device());
  backend_for(x.device()).reduce_rows(op, rows, out);
  return out.view(keepdim ? plan.keepdim_shape : plan.kept_shape);
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_defined("sum", x, "x");
  check_floating("sum", x);
  ReducePlan plan = plan_reduction(x, dims, "sum");
  Tensor out = reduce_forward(RowReduceOp::Sum, x, plan, keepdim);
  return record_op("sum", {x}, out, [plan, input_shape = x.shape()](const std::vector<Tensor>& g,
                                                                     const std::vector<bool>&) {
    return std::vector<Tensor>{g[0].reshape(plan.keepdim_shape).expand(input_shape)};
  });
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  ReducePlan plan = plan_reduction(x, dims, "mean");
  TS_CHECK(plan.reduced > 0, "mean: reducing over zero elements of shape ", x.shape());
  return scale(sum(x, dims, keepdim), 1.0 / static_cast<double>(plan.reduced));
}

Tensor amax(const Tensor& x, int64_t dim, bool keepdim) {
  check_defined("amax", x, "x");
  check_floating("amax", x);
  ReducePlan plan = plan_reduction(x, {dim}, "amax");
  TS_CHECK(plan.reduced > 0, "amax: reducing over an empty dim of shape ", x.shape());
  return reduce_forward(RowReduceOp::Max, x, plan, keepdim);
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  check_defined("argmax", x, "x");
  check_floating("argmax", x);
  ReducePlan plan = plan_reduction(x, {dim}, "argmax");
  TS_CHECK(plan.reduced > 0, "argmax: reducing over an empty dim of shape ", x.shape());
  Tensor rows = x.detach().permute(plan.permutation).contiguous().view({plan.rows, plan.reduced});
  Tensor out = Tensor::empty({plan.rows}, DType::I64, x.device());
  backend_for(x.device()).argmax_rows(rows, out);
  return out.view(keepdim ? plan.keepdim_shape : plan.kept_shape);
}

}  // namespace tessera
