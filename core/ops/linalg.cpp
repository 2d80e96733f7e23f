#include "core/ops/linalg.h"

#include "core/autograd/node.h"
#include "core/backend.h"
#include "core/ops/checks.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace tessera {

namespace {

using Grads = std::vector<Tensor>;
using Needs = std::vector<bool>;

// op(a) @ op(b) (+ bias) for 3-D contiguous a, b (a batch of 1 broadcasts) into a new tensor.
Tensor gemm_new(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, const Tensor& bias = {},
               const Tensor& dgelu_of = {}) {
  int64_t batch = std::max(a.size(0), b.size(0));
  int64_t m = trans_a ? a.size(2) : a.size(1);
  int64_t n = trans_b ? b.size(1) : b.size(2);
  Tensor c = Tensor::empty({batch, m, n}, a.dtype(), a.device());
  GemmArgs args;
  args.trans_a = trans_a;
  args.trans_b = trans_b;
  if (bias.defined()) {
    args.epilogue = GemmEpilogue::Bias;
    args.bias = bias;
  }
  if (dgelu_of.defined()) {  // c = gelu'(dgelu_of) * ab
    args.epilogue = GemmEpilogue::DGelu;
    args.pre_gelu = dgelu_of;
  }
  backend_for(a.device()).gemm(a, b, c, args);
  return c;
}

// The column sums of g [1, rows, out] as [out]: a GEMM ones [1, rows] x g reads g once with
// f32 accumulation (a sum over dim 0 transposed g into a copy first: on an H100 that copy cost
// 4x the GEMM).
Tensor bias_gradient(const Tensor& g3) {
  Tensor ones = Tensor::full({1, 1, g3.size(1)}, 1.0, g3.dtype(), g3.device());
  return gemm_new(ones, g3, false, false).view({g3.size(2)});
}

Shape with_last_two(Shape batch, int64_t rows, int64_t cols) {
  batch.push_back(rows);
  batch.push_back(cols);
  return batch;
}

void check_matmul_args(std::string_view op, const Tensor& a, const Tensor& b) {
  check_defined(op, a, "first operand");
  check_defined(op, b, "second operand");
  check_same_dtype_device(op, a, b);
  check_floating(op, a);
  TS_CHECK(a.dim() >= 2 && b.dim() >= 2, op, ": operands must be at least 2-D, got ", a.shape(),
           " and ", b.shape());
}

// a [..., M, K] @ b [K, N]: the leading dims of a fold into M.
Tensor matmul_folded(const Tensor& a, const Tensor& b) {
  int64_t k = a.size(-1), n = b.size(1);
  int64_t rows = shape_numel(Shape(a.shape().begin(), a.shape().end() - 1));
  Tensor a3 = a.detach().contiguous().view({1, rows, k});
  Tensor b3 = b.detach().contiguous().view({1, k, n});
  Shape out_shape = a.shape();
  out_shape.back() = n;
  Tensor out = gemm_new(a3, b3, false, false).view(out_shape);
  return record_op("matmul", {a, b}, out, [a3, b3, a_shape = a.shape(), rows, n](const Grads& g, const Needs& need) {
    Tensor g3 = g[0].contiguous().view({1, rows, n});
    return Grads{need[0] ? gemm_new(g3, b3, false, true).view(a_shape) : Tensor(),
                 need[1] ? gemm_new(a3, g3, true, false).view({a3.size(2), n}) : Tensor()};
  });
}

// a [..., M, K] @ b [..., K, N] with broadcast batch dims.
Tensor matmul_batched(const Tensor& a, const Tensor& b) {
  int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  Shape batch = broadcast_shapes(Shape(a.shape().begin(), a.shape().end() - 2),
                                 Shape(b.shape().begin(), b.shape().end() - 2), "matmul");
  int64_t nb = shape_numel(batch);
  Tensor a3 = a.detach().expand(with_last_two(batch, m, k)).contiguous().view({nb, m, k});
  Tensor b3 = b.detach().expand(with_last_two(batch, k, n)).contiguous().view({nb, k, n});
  Tensor out = gemm_new(a3, b3, false, false).view(with_last_two(batch, m, n));
  return record_op("matmul", {a, b}, out, [a3, b3, batch, a_shape = a.shape(), b_shape = b.shape(), nb, m, k, n](
                                              const Grads& g, const Needs& need) {
    Tensor g3 = g[0].contiguous().view({nb, m, n});
    Tensor dL_da, dL_db;
    if (need[0]) dL_da = sum_to(gemm_new(g3, b3, false, true).view(with_last_two(batch, m, k)), a_shape);
    if (need[1]) dL_db = sum_to(gemm_new(a3, g3, true, false).view(with_last_two(batch, k, n)), b_shape);
    return Grads{dL_da, dL_db};
  });
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_matmul_args("matmul", a, b);
  TS_CHECK(a.size(-1) == b.size(-2), "matmul: inner dimensions differ: ", a.shape(), " @ ", b.shape(),
           " (", a.size(-1), " vs ", b.size(-2), ")");
  return b.dim() == 2 ? matmul_folded(a, b) : matmul_batched(a, b);
}

namespace {

void check_linear_args(std::string_view op, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_defined(op, x, "input");
  check_defined(op, weight, "weight");
  check_same_dtype_device(op, x, weight);
  check_floating(op, x);
  check_dim(op, weight, 2, "weight");
  int64_t in = weight.size(1), out_features = weight.size(0);
  TS_CHECK(x.dim() >= 1 && x.size(-1) == in, op, ": input ", x.shape(), " does not match weight ", weight.shape(),
           " (weight is [out, in], so the input's last dim must be ", in, ")");
  if (bias.defined()) {
    check_same_dtype_device(op, x, bias);
    TS_CHECK(bias.dim() == 1 && bias.size(0) == out_features, op, ": bias must be [", out_features,
             "] for weight ", weight.shape(), ", got ", bias.shape());
  }
}

}  // namespace

namespace {

// x and weight as the GEMM operands [1, rows, in] and [1, out, in].
struct LinearOperands {
  Tensor x3, w3;
  int64_t rows, out_features;
  Shape out_shape;
};

LinearOperands linear_operands(const Tensor& x, const Tensor& weight) {
  int64_t in = weight.size(1), out_features = weight.size(0);
  int64_t rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  return {x.detach().contiguous().view({1, rows, in}), weight.detach().contiguous().view({1, out_features, in}), rows,
          out_features, out_shape};
}

// Records y [..., out] (computed from `o`) as linear(x, weight, bias)'s output.
Tensor record_linear(const Tensor& x, const Tensor& weight, const Tensor& bias, const LinearOperands& o,
                     const Tensor& y) {
  return record_op("linear", {x, weight, bias}, y, [o, x_shape = x.shape()](const Grads& g, const Needs& need) {
    Tensor g3 = g[0].contiguous().view({1, o.rows, o.out_features});
    return Grads{need[0] ? gemm_new(g3, o.w3, false, false).view(x_shape) : Tensor(),
                 need[1] ? gemm_new(g3, o.x3, true, false).view({o.out_features, o.w3.size(2)}) : Tensor(),
                 need[2] ? bias_gradient(g3) : Tensor()};
  });
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_linear_args("linear", x, weight, bias);
  LinearOperands o = linear_operands(x, weight);
  Tensor y = gemm_new(o.x3, o.w3, false, true, bias.defined() ? bias.detach().contiguous() : Tensor());
  return record_linear(x, weight, bias, o, y.view(o.out_shape));
}

Tensor linear_of_swiglu(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  constexpr std::string_view op = "linear_of_swiglu";
  check_defined(op, x, "input");
  check_defined(op, weight, "weight");
  check_same_dtype_device(op, x, weight);
  check_floating(op, x);
  check_dim(op, weight, 2, "weight");
  const int64_t width = weight.size(1), out_features = weight.size(0);
  TS_CHECK(x.dim() >= 1 && x.size(-1) == 2 * width, op, ": input ", x.shape(), " does not match weight ",
           weight.shape(), " (the input packs gate and up: its last dim must be 2 x ", width, ")");
  if (bias.defined()) {
    check_same_dtype_device(op, x, bias);
    TS_CHECK(bias.dim() == 1 && bias.size(0) == out_features, op, ": bias must be [", out_features, "], got ",
             bias.shape());
  }
  const int64_t rows = x.numel() / (2 * width);
  Tensor x3 = x.detach().contiguous().view({1, rows, 2 * width});
  Tensor w3 = weight.detach().contiguous().view({1, out_features, width});
  Backend& backend = backend_for(x.device());
  Tensor y;
  {
    Tensor a3 = Tensor::empty({1, rows, width}, x.dtype(), x.device());  // freed before the backward
    backend.swiglu_packed(x3, a3);
    y = gemm_new(a3, w3, false, true, bias.defined() ? bias.detach().contiguous() : Tensor());
  }
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  return record_op(
      "linear_of_swiglu", {x, weight, bias}, y.view(out_shape),
      [x3, w3, x_shape = x.shape(), rows, width, out_features](const Grads& g, const Needs& need) {
        Backend& backend = backend_for(x3.device());
        Tensor g3 = g[0].contiguous().view({1, rows, out_features});
        Tensor dL_dx, dL_dw;
        if (need[0]) {
          Tensor dL_da = gemm_new(g3, w3, false, false);
          dL_dx = Tensor::empty(x3.shape(), x3.dtype(), x3.device());
          backend.swiglu_packed_backward(x3, dL_da, dL_dx);
          dL_dx = dL_dx.view(x_shape);
        }
        if (need[1]) {
          Tensor a3 = Tensor::empty({1, rows, width}, x3.dtype(), x3.device());
          backend.swiglu_packed(x3, a3);
          dL_dw = gemm_new(g3, a3, true, false).view({out_features, width});
        }
        return Grads{dL_dx, dL_dw, need[2] ? bias_gradient(g3) : Tensor()};
      });
}

LinearAndGelu linear_and_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_linear_args("linear_and_gelu", x, weight, bias);
  LinearOperands o = linear_operands(x, weight);
  Tensor pre = Tensor::empty({1, o.rows, o.out_features}, x.dtype(), x.device());
  Tensor activation = Tensor::empty(pre.shape(), x.dtype(), x.device());
  GemmArgs args;
  args.trans_b = true;
  args.epilogue = bias.defined() ? GemmEpilogue::BiasGelu : GemmEpilogue::Gelu;
  if (bias.defined()) args.bias = bias.detach().contiguous();
  args.pre_gelu = pre;
  backend_for(x.device()).gemm(o.x3, o.w3, activation, args);
  return {record_linear(x, weight, bias, o, pre.view(o.out_shape)), activation.view(o.out_shape)};
}

Tensor linear_of_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& gelu_of_x) {
  check_linear_args("linear_of_gelu", x, weight, bias);
  TS_CHECK(!gelu_of_x.defined() || (gelu_of_x.shape() == x.shape() && gelu_of_x.dtype() == x.dtype()),
           "linear_of_gelu: gelu_of_x ", gelu_of_x.shape(), " must have x's shape ", x.shape(), " and dtype");
  const auto [x3, w3, rows, out_features, out_shape] = linear_operands(x, weight);
  Backend& backend = backend_for(x.device());
  Tensor y;
  {
    Tensor a3 = gelu_of_x.defined() ? gelu_of_x.detach().contiguous().view(x3.shape()) : Tensor();
    if (!a3.defined()) {
      a3 = Tensor::empty(x3.shape(), x3.dtype(), x3.device());  // freed before the backward
      backend.unary(UnaryOp::Gelu, x3, a3);
    }
    y = gemm_new(a3, w3, false, true, bias.defined() ? bias.detach().contiguous() : Tensor());
  }
  return record_op("linear_of_gelu", {x, weight, bias}, y.view(out_shape),
                   [x3, w3, x_shape = x.shape(), rows, out_features](const Grads& g, const Needs& need) {
                     Backend& backend = backend_for(x3.device());
                     Tensor g3 = g[0].contiguous().view({1, rows, out_features});
                     Tensor dL_dx, dL_dw;
                     // d/dx = gelu'(x) * (g w): the GELU gradient in the GEMM's epilogue.
                     if (need[0]) dL_dx = gemm_new(g3, w3, false, false, {}, x3).view(x_shape);
                     if (need[1]) {
                       Tensor a3 = Tensor::empty(x3.shape(), x3.dtype(), x3.device());
                       backend.unary(UnaryOp::Gelu, x3, a3);
                       dL_dw = gemm_new(g3, a3, true, false).view({out_features, w3.size(2)});
                     }
                     return Grads{dL_dx, dL_dw, need[2] ? bias_gradient(g3) : Tensor()};
                   });
}

}  // namespace tessera
