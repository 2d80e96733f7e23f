#include "core/ops/elementwise.h"

#include "core/autograd/node.h"
#include "core/backend.h"
#include "core/ops/checks.h"
#include "core/ops/reduce.h"

namespace tessera {

namespace {

using Grads = std::vector<Tensor>;
using Needs = std::vector<bool>;

// Broadcasts a and b, runs the binary kernel, returns the untracked result.
Tensor binary_forward(BinaryOp op, std::string_view name, const Tensor& a, const Tensor& b) {
  check_defined(name, a, "a");
  check_defined(name, b, "b");
  check_same_dtype_device(name, a, b);
  check_floating(name, a);
  Shape out_shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());
  backend_for(a.device()).binary(op, a.detach().expand(out_shape), b.detach().expand(out_shape), out);
  return out;
}

Tensor unary_forward(UnaryOp op, std::string_view name, const Tensor& x) {
  check_defined(name, x, "x");
  check_floating(name, x);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).unary(op, x.detach().contiguous(), out);
  return out;
}

// Unary op whose gradient comes from the backend's unary_backward kernel.
Tensor unary_with_kernel_grad(UnaryOp op, const char* name, const Tensor& x) {
  Tensor out = unary_forward(op, name, x);
  return record_op(name, {x}, out, [op, x](const Grads& g, const Needs&) {
    Tensor dL_dx = Tensor::empty(x.shape(), x.dtype(), x.device());
    backend_for(x.device()).unary_backward(op, x.detach().contiguous(), g[0].contiguous(), dL_dx);
    return Grads{dL_dx};
  });
}

}  // namespace

Tensor sum_to(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  size_t lead = grad.shape().size() - shape.size();
  std::vector<int64_t> dims;
  for (size_t i = 0; i < grad.shape().size(); ++i) {
    if (i < lead || (shape[i - lead] == 1 && grad.shape()[i] != 1)) dims.push_back(static_cast<int64_t>(i));
  }
  return sum(grad, dims, /*keepdim=*/true).reshape(shape);
}

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Add, "add", a, b);
  return record_op("add", {a, b}, out, [sa = a.shape(), sb = b.shape()](const Grads& g, const Needs& n) {
    return Grads{n[0] ? sum_to(g[0], sa) : Tensor(), n[1] ? sum_to(g[0], sb) : Tensor()};
  });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Sub, "sub", a, b);
  return record_op("sub", {a, b}, out, [sa = a.shape(), sb = b.shape()](const Grads& g, const Needs& n) {
    return Grads{n[0] ? sum_to(g[0], sa) : Tensor(), n[1] ? sum_to(neg(g[0]), sb) : Tensor()};
  });
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Mul, "mul", a, b);
  return record_op("mul", {a, b}, out, [a, b](const Grads& g, const Needs& n) {
    return Grads{n[0] ? sum_to(mul(g[0], b.detach()), a.shape()) : Tensor(),
                 n[1] ? sum_to(mul(g[0], a.detach()), b.shape()) : Tensor()};
  });
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(BinaryOp::Div, "div", a, b);
  return record_op("div", {a, b}, out, [a, b](const Grads& g, const Needs& n) {
    Tensor bd = b.detach();
    return Grads{n[0] ? sum_to(div(g[0], bd), a.shape()) : Tensor(),
                 n[1] ? sum_to(neg(div(mul(g[0], a.detach()), mul(bd, bd))), b.shape()) : Tensor()};
  });
}

Tensor eq(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Eq, "eq", a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Gt, "gt", a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary_forward(BinaryOp::Lt, "lt", a, b); }

Tensor neg(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Neg, "neg", x);
  return record_op("neg", {x}, out, [](const Grads& g, const Needs&) { return Grads{neg(g[0])}; });
}

Tensor exp(const Tensor& x) { return unary_with_kernel_grad(UnaryOp::Exp, "exp", x); }
Tensor log(const Tensor& x) { return unary_with_kernel_grad(UnaryOp::Log, "log", x); }
Tensor sqrt(const Tensor& x) { return unary_with_kernel_grad(UnaryOp::Sqrt, "sqrt", x); }
Tensor abs(const Tensor& x) { return unary_with_kernel_grad(UnaryOp::Abs, "abs", x); }
Tensor square(const Tensor& x) { return unary_with_kernel_grad(UnaryOp::Square, "square", x); }
Tensor relu(const Tensor& x) { return unary_with_kernel_grad(UnaryOp::Relu, "relu", x); }
Tensor gelu(const Tensor& x) { return unary_with_kernel_grad(UnaryOp::Gelu, "gelu", x); }
Tensor silu(const Tensor& x) { return unary_with_kernel_grad(UnaryOp::Silu, "silu", x); }
Tensor tanh(const Tensor& x) { return unary_with_kernel_grad(UnaryOp::Tanh, "tanh", x); }
Tensor sigmoid(const Tensor& x) { return unary_with_kernel_grad(UnaryOp::Sigmoid, "sigmoid", x); }

Tensor rsqrt(const Tensor& x) {
  Tensor out = unary_forward(UnaryOp::Rsqrt, "rsqrt", x);
  // d/dx x^(-1/2) = -1/2 x^(-3/2)
  return record_op("rsqrt", {x}, out, [x](const Grads& g, const Needs&) {
    return Grads{mul(g[0], scale(pow(x.detach(), -1.5), -0.5))};
  });
}

Tensor pow(const Tensor& x, double exponent) {
  check_defined("pow", x, "x");
  check_floating("pow", x);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).pow(x.detach().contiguous(), exponent, out);
  return record_op("pow", {x}, out, [x, exponent](const Grads& g, const Needs&) {
    return Grads{mul(g[0], scale(pow(x.detach(), exponent - 1.0), exponent))};
  });
}

Tensor affine(const Tensor& x, double factor, double shift) {
  check_defined("affine", x, "x");
  check_floating("affine", x);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).affine(x.detach().contiguous(), factor, shift, out);
  return record_op("affine", {x}, out, [factor](const Grads& g, const Needs&) {
    return Grads{scale(g[0], factor)};
  });
}

Tensor scale(const Tensor& x, double factor) { return affine(x, factor, 0.0); }

Tensor swiglu(const Tensor& gate, const Tensor& up) {
  check_defined("swiglu", gate, "gate");
  check_defined("swiglu", up, "up");
  check_same_dtype_device("swiglu", gate, up);
  TS_CHECK(gate.shape() == up.shape(), "swiglu: gate ", gate.shape(), " and up ", up.shape(),
           " must have the same shape");
  Tensor out = Tensor::empty(gate.shape(), gate.dtype(), gate.device());
  Tensor g_in = gate.detach().contiguous(), u_in = up.detach().contiguous();
  backend_for(gate.device()).swiglu(g_in, u_in, out);
  return record_op("swiglu", {gate, up}, out, [g_in, u_in](const Grads& g, const Needs&) {
    Tensor dL_dgate = Tensor::empty(g_in.shape(), g_in.dtype(), g_in.device());
    Tensor dL_dup = Tensor::empty(u_in.shape(), u_in.dtype(), u_in.device());
    backend_for(g_in.device()).swiglu_backward(g_in, u_in, g[0].contiguous(), dL_dgate, dL_dup);
    return Grads{dL_dgate, dL_dup};
  });
}

}  // namespace tessera
