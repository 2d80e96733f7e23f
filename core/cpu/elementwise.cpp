// CPU reference for the elementwise kernels: binary (a, b broadcast through strides), unary and
// its backward, affine, pow, axpy and SwiGLU. Float dtypes compute in acc_type<T> (f64 for
// f64, f32 for f32/bf16/f16); binary also takes i32/i64, computed in int64_t. Every backward
// takes the forward INPUT x and writes dL_dx = dL_dy * f'(x).
#include <cmath>
#include <string_view>

#include "core/cpu/activation_math.h"
#include "core/cpu/cpu_backend.h"
#include "core/cpu/strided.h"

namespace tessera {

namespace {

// Arithmetic type of a binary kernel: acc_type for floats, int64_t for index dtypes.
template <typename T>
using binary_compute_type = std::conditional_t<std::is_integral_v<T>, int64_t, acc_type<T>>;

template <typename C>
bool is_nan(C v) {
  if constexpr (std::is_floating_point_v<C>) {
    return std::isnan(v);
  } else {
    return false;
  }
}

bool is_comparison(BinaryOp op) { return op == BinaryOp::Eq || op == BinaryOp::Gt || op == BinaryOp::Lt; }

// Max and Min propagate NaN.
template <typename C>
C binary_apply(BinaryOp op, C x, C y) {
  switch (op) {
    case BinaryOp::Add: return x + y;
    case BinaryOp::Sub: return x - y;
    case BinaryOp::Mul: return x * y;
    case BinaryOp::Div:
      if constexpr (std::is_integral_v<C>) TS_CHECK(y != 0, "binary: integer division by zero");
      return x / y;
    case BinaryOp::Max: return (x > y || is_nan(x)) ? x : y;
    case BinaryOp::Min: return (x < y || is_nan(x)) ? x : y;
    case BinaryOp::Eq: return C(x == y);
    case BinaryOp::Gt: return C(x > y);
    case BinaryOp::Lt: return C(x < y);
  }
  TS_CHECK(false, "binary: unknown op ", static_cast<int>(op));
  return C{};
}

template <typename A>
A sigmoid(A x) {
  return A(1) / (A(1) + std::exp(-x));
}

template <typename A>
A unary_apply(UnaryOp op, A x) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return std::log(x);
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Rsqrt: return A(1) / std::sqrt(x);
    case UnaryOp::Abs: return std::abs(x);
    case UnaryOp::Relu: return x < A(0) ? A(0) : x;
    case UnaryOp::Gelu: return gelu_tanh(x);
    case UnaryOp::Silu: return x * sigmoid(x);
    case UnaryOp::Tanh: return std::tanh(x);
    case UnaryOp::Sigmoid: return sigmoid(x);
    case UnaryOp::Square: return x * x;
  }
  TS_CHECK(false, "unary: unknown op ", static_cast<int>(op));
  return A{};
}

// f'(x) for every unary op (Relu' and Abs' are 0 at 0).
template <typename A>
A unary_derivative(UnaryOp op, A x) {
  switch (op) {
    case UnaryOp::Neg: return A(-1);
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return A(1) / x;
    case UnaryOp::Sqrt: return A(0.5) / std::sqrt(x);
    case UnaryOp::Rsqrt: return A(-0.5) / (x * std::sqrt(x));
    case UnaryOp::Abs: return x > A(0) ? A(1) : (x < A(0) ? A(-1) : A(0));
    case UnaryOp::Relu: return x > A(0) ? A(1) : A(0);
    case UnaryOp::Gelu: return gelu_tanh_slope(x);
    case UnaryOp::Silu: {
      A s = sigmoid(x);
      return s * (A(1) + x * (A(1) - s));
    }
    case UnaryOp::Tanh: {
      A t = std::tanh(x);
      return A(1) - t * t;
    }
    case UnaryOp::Sigmoid: {
      A s = sigmoid(x);
      return s * (A(1) - s);
    }
    case UnaryOp::Square: return A(2) * x;
  }
  TS_CHECK(false, "unary_backward: unknown op ", static_cast<int>(op));
  return A{};
}

// Checks the shared preconditions of a contiguous same-shape elementwise kernel.
void check_elementwise(std::string_view op, const Tensor& x, std::string_view out_name, const Tensor& out) {
  check_like(op, out_name, out, "x", x);
  check_contiguous(op, "x", x);
  check_contiguous(op, out_name, out);
}

// out[i] = fn(x[i]) in acc_type, for contiguous x and out of one float dtype.
template <typename Fn>
void map_unary(std::string_view op, const Tensor& x, const Tensor& out, Fn fn) {
  check_elementwise(op, x, "out", out);
  int64_t n = x.numel();
  dispatch_float(x.dtype(), op, [&](auto t) {
    using T = decltype(t);
    using A = acc_type<T>;
    const T* in = x.data<T>();
    T* y = out.data<T>();
    for (int64_t i = 0; i < n; ++i) y[i] = T(fn(static_cast<A>(in[i])));
  });
}

}  // namespace

void CpuBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  TS_CHECK(a.shape() == out.shape() && b.shape() == out.shape(), "binary: a ", shape_str(a.shape()), " and b ",
           shape_str(b.shape()), " must be views with out's shape ", shape_str(out.shape()),
           " (broadcast by stride 0)");
  TS_CHECK(a.dtype() == b.dtype(), "binary: a is ", a.dtype(), " but b is ", b.dtype());
  TS_CHECK(out.dtype() == a.dtype() || (is_comparison(op) && out.dtype() == DType::Bool), "binary: out is ",
           out.dtype(), " for ", a.dtype(), " inputs (only comparisons may write bool)");
  int64_t n = out.numel();
  auto run = [&](auto t, auto o) {
    using T = decltype(t);
    using O = decltype(o);
    using C = binary_compute_type<T>;
    StridedView<T> x(a);
    StridedView<T> y(b);
    StridedView<O> z(out);
    for (int64_t i = 0; i < n; ++i) z[i] = convert<O>(binary_apply(op, convert<C>(x[i]), convert<C>(y[i])));
  };
  auto with_input_type = [&](auto t) {
    if (out.dtype() == DType::Bool) {
      run(t, bool{});
    } else {
      run(t, t);
    }
  };
  if (is_floating(a.dtype())) {
    dispatch_float(a.dtype(), "binary", with_input_type);
  } else {
    dispatch_index(a.dtype(), "binary", with_input_type);
  }
}

void CpuBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  map_unary("unary", x, out, [op](auto v) { return unary_apply(op, v); });
}

void CpuBackend::unary_backward(UnaryOp op, const Tensor& x, const Tensor& dL_dy, const Tensor& dL_dx) {
  check_elementwise("unary_backward", x, "dL_dy", dL_dy);
  check_elementwise("unary_backward", x, "dL_dx", dL_dx);
  int64_t n = x.numel();
  dispatch_float(x.dtype(), "unary_backward", [&](auto t) {
    using T = decltype(t);
    using A = acc_type<T>;
    const T* in = x.data<T>();
    const T* dy = dL_dy.data<T>();
    T* dx = dL_dx.data<T>();
    for (int64_t i = 0; i < n; ++i) dx[i] = T(static_cast<A>(dy[i]) * unary_derivative(op, static_cast<A>(in[i])));
  });
}

void CpuBackend::affine(const Tensor& x, double scale, double shift, const Tensor& out) {
  map_unary("affine", x, out, [scale, shift](auto v) {
    using A = decltype(v);
    return v * static_cast<A>(scale) + static_cast<A>(shift);
  });
}

void CpuBackend::pow(const Tensor& x, double exponent, const Tensor& out) {
  map_unary("pow", x, out, [exponent](auto v) {
    using A = decltype(v);
    return std::pow(v, static_cast<A>(exponent));
  });
}

void CpuBackend::axpy(double alpha, const Tensor& x, const Tensor& y) {
  TS_CHECK(x.shape() == y.shape(), "axpy: x ", shape_str(x.shape()), " and y ", shape_str(y.shape()),
           " differ in shape");
  check_contiguous("axpy", "x", x);
  int64_t n = y.numel();
  dispatch_float(x.dtype(), "axpy", [&](auto xt) {
    using X = decltype(xt);
    dispatch_float(y.dtype(), "axpy", [&](auto yt) {
      using Y = decltype(yt);
      using A = acc_type<Y>;
      const X* in = x.data<X>();
      StridedView<Y> acc(y);
      A a = static_cast<A>(alpha);
      for (int64_t i = 0; i < n; ++i) acc[i] = Y(static_cast<A>(acc[i]) + a * convert<A>(in[i]));
    });
  });
}

void CpuBackend::swiglu(const Tensor& gate, const Tensor& up, const Tensor& out) {
  check_elementwise("swiglu", gate, "up", up);
  check_elementwise("swiglu", gate, "out", out);
  int64_t n = gate.numel();
  dispatch_float(gate.dtype(), "swiglu", [&](auto t) {
    using T = decltype(t);
    using A = acc_type<T>;
    const T* g = gate.data<T>();
    const T* u = up.data<T>();
    T* y = out.data<T>();
    for (int64_t i = 0; i < n; ++i) {
      A gv = static_cast<A>(g[i]);
      y[i] = T(gv * sigmoid(gv) * static_cast<A>(u[i]));
    }
  });
}

void CpuBackend::swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dL_dout,
                                 const Tensor& dL_dgate, const Tensor& dL_dup) {
  check_elementwise("swiglu_backward", gate, "up", up);
  check_elementwise("swiglu_backward", gate, "dL_dout", dL_dout);
  check_elementwise("swiglu_backward", gate, "dL_dgate", dL_dgate);
  check_elementwise("swiglu_backward", gate, "dL_dup", dL_dup);
  int64_t n = gate.numel();
  dispatch_float(gate.dtype(), "swiglu_backward", [&](auto t) {
    using T = decltype(t);
    using A = acc_type<T>;
    const T* g = gate.data<T>();
    const T* u = up.data<T>();
    const T* dout = dL_dout.data<T>();
    T* dgate = dL_dgate.data<T>();
    T* dup = dL_dup.data<T>();
    for (int64_t i = 0; i < n; ++i) {
      A gv = static_cast<A>(g[i]);
      A uv = static_cast<A>(u[i]);
      A dy = static_cast<A>(dout[i]);
      A s = sigmoid(gv);
      dgate[i] = T(dy * uv * s * (A(1) + gv * (A(1) - s)));
      dup[i] = T(dy * gv * s);
    }
  });
}

namespace {

// h [..., 2F] contiguous; `other` (out or dL_dout [..., F], or dL_dh like h) contiguous, h's dtype.
int64_t check_swiglu_packed(std::string_view op, const Tensor& h, std::string_view name, const Tensor& other,
                            int64_t other_width) {
  TS_CHECK(h.dim() >= 1 && h.size(-1) % 2 == 0, op, ": h ", h.shape(), " must be [..., 2F] (gate, then up)");
  Shape want = h.shape();
  want.back() = other_width;
  TS_CHECK(other.shape() == want && other.dtype() == h.dtype() && other.is_contiguous() && h.is_contiguous(), op,
           ": expected contiguous h ", h.shape(), " and ", name, " ", want, " of h's dtype, got ", name, " ",
           other.shape(), " ", dtype_name(other.dtype()));
  return h.size(-1) / 2;
}

}  // namespace

void CpuBackend::swiglu_packed(const Tensor& h, const Tensor& out) {
  const int64_t F = h.dim() >= 1 ? h.size(-1) / 2 : 0;
  check_swiglu_packed("swiglu_packed", h, "out", out, F);
  const int64_t rows = F == 0 ? 0 : out.numel() / F;
  dispatch_float(h.dtype(), "swiglu_packed", [&](auto t) {
    using T = decltype(t);
    using A = acc_type<T>;
    const T* x = h.data<T>();
    T* y = out.data<T>();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < F; ++c) {
        A gv = static_cast<A>(x[r * 2 * F + c]);
        y[r * F + c] = T(gv * sigmoid(gv) * static_cast<A>(x[r * 2 * F + F + c]));
      }
    }
  });
}

void CpuBackend::swiglu_packed_backward(const Tensor& h, const Tensor& dL_dout, const Tensor& dL_dh) {
  const int64_t F = h.dim() >= 1 ? h.size(-1) / 2 : 0;
  check_swiglu_packed("swiglu_packed_backward", h, "dL_dout", dL_dout, F);
  check_swiglu_packed("swiglu_packed_backward", h, "dL_dh", dL_dh, 2 * F);
  const int64_t rows = F == 0 ? 0 : dL_dout.numel() / F;
  dispatch_float(h.dtype(), "swiglu_packed_backward", [&](auto t) {
    using T = decltype(t);
    using A = acc_type<T>;
    const T* x = h.data<T>();
    const T* dout = dL_dout.data<T>();
    T* dx = dL_dh.data<T>();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < F; ++c) {
        A gv = static_cast<A>(x[r * 2 * F + c]), uv = static_cast<A>(x[r * 2 * F + F + c]);
        A dy = static_cast<A>(dout[r * F + c]), s = sigmoid(gv);
        dx[r * 2 * F + c] = T(dy * uv * s * (A(1) + gv * (A(1) - s)));
        dx[r * 2 * F + F + c] = T(dy * gv * s);
      }
    }
  });
}

}  // namespace tessera
