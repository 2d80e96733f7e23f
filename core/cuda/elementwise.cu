// CUDA elementwise kernels: binary (a, b broadcast through strides), unary and its backward,
// affine and pow (SwiGLU and axpy: swiglu_axpy.cu; shared parts: elementwise_common.cuh). Same
// formulas and dtype rules as core/cpu/elementwise.cpp: floats compute in acc_t (f64 for f64,
// f32 otherwise), binary also takes i32/i64 computed in int64_t, comparisons write 1/0 in out's
// dtype (bool allowed), Max/Min propagate NaN, and every backward takes the forward input x.
//
// Contiguous operands take the vector path (core/cuda/vectorized.cuh: 16 bytes of the widest
// operand per access). Strided operands (broadcast views, a strided y in axpy) take the indexed
// path: adjacent dims that are contiguous for every operand are merged on the host first, and
// index arithmetic is 32-bit when every offset fits. Where the innermost merged dim has stride
// 1 in out and 1 or 0 in a and b (a bias or a per-row scale broadcast), binary still moves 16
// bytes per access and computes one index per vector. The ops are template parameters, so
// each kernel is straight-line code.
#include "core/cuda/device_error.cuh"
#include "core/cuda/elementwise_common.cuh"

namespace tessera {

namespace {

using namespace elementwise;

// Calls fn(std::integral_constant<UnaryOp, op>{}).
template <typename Fn>
void dispatch_unary_op(UnaryOp op, const char* kernel, Fn&& fn) {
  using U = UnaryOp;
  // clang-format off
  switch (op) {
    case U::Neg: fn(std::integral_constant<U, U::Neg>{}); return;
    case U::Exp: fn(std::integral_constant<U, U::Exp>{}); return;
    case U::Log: fn(std::integral_constant<U, U::Log>{}); return;
    case U::Sqrt: fn(std::integral_constant<U, U::Sqrt>{}); return;
    case U::Rsqrt: fn(std::integral_constant<U, U::Rsqrt>{}); return;
    case U::Abs: fn(std::integral_constant<U, U::Abs>{}); return;
    case U::Relu: fn(std::integral_constant<U, U::Relu>{}); return;
    case U::Gelu: fn(std::integral_constant<U, U::Gelu>{}); return;
    case U::Silu: fn(std::integral_constant<U, U::Silu>{}); return;
    case U::Tanh: fn(std::integral_constant<U, U::Tanh>{}); return;
    case U::Sigmoid: fn(std::integral_constant<U, U::Sigmoid>{}); return;
    case U::Square: fn(std::integral_constant<U, U::Square>{}); return;
  }
  // clang-format on
  TS_CHECK(false, kernel, ": unknown op ", static_cast<int>(op));
}

// ---- binary ops: compute type int64_t for index dtypes, acc_t for floats ----

template <typename T>
using compute_t = std::conditional_t<std::is_integral_v<T>, int64_t, acc_t<T>>;

template <typename T>
__device__ __forceinline__ compute_t<T> to_compute(T v) {
  if constexpr (std::is_integral_v<T>) {
    return static_cast<int64_t>(v);
  } else {
    return load(v);
  }
}

template <typename O, typename C>
__device__ __forceinline__ O from_compute(C v) {
  if constexpr (std::is_same_v<O, bool>) {
    return v != C(0);
  } else {
    return store<O>(v);
  }
}

template <typename C>
__device__ __forceinline__ bool is_nan(C v) {
  if constexpr (std::is_floating_point_v<C>) {
    return isnan(v);
  } else {
    return false;
  }
}

template <BinaryOp OP, typename C>
__device__ __forceinline__ C binary_value(C x, C y) {
  if constexpr (OP == BinaryOp::Add) {
    return x + y;
  } else if constexpr (OP == BinaryOp::Sub) {
    return x - y;
  } else if constexpr (OP == BinaryOp::Mul) {
    return x * y;
  } else if constexpr (OP == BinaryOp::Div) {
    return x / y;  // integer divisors were checked nonzero first
  } else if constexpr (OP == BinaryOp::Max) {
    return (x > y || is_nan(x)) ? x : y;
  } else if constexpr (OP == BinaryOp::Min) {
    return (x < y || is_nan(x)) ? x : y;
  } else if constexpr (OP == BinaryOp::Eq) {
    return C(x == y);
  } else if constexpr (OP == BinaryOp::Gt) {
    return C(x > y);
  } else {
    static_assert(OP == BinaryOp::Lt);
    return C(x < y);
  }
}

bool is_comparison(BinaryOp op) { return op == BinaryOp::Eq || op == BinaryOp::Gt || op == BinaryOp::Lt; }

template <typename Fn>
void dispatch_binary_op(BinaryOp op, Fn&& fn) {
  using B = BinaryOp;
  // clang-format off
  switch (op) {
    case B::Add: fn(std::integral_constant<B, B::Add>{}); return;
    case B::Sub: fn(std::integral_constant<B, B::Sub>{}); return;
    case B::Mul: fn(std::integral_constant<B, B::Mul>{}); return;
    case B::Div: fn(std::integral_constant<B, B::Div>{}); return;
    case B::Max: fn(std::integral_constant<B, B::Max>{}); return;
    case B::Min: fn(std::integral_constant<B, B::Min>{}); return;
    case B::Eq: fn(std::integral_constant<B, B::Eq>{}); return;
    case B::Gt: fn(std::integral_constant<B, B::Gt>{}); return;
    case B::Lt: fn(std::integral_constant<B, B::Lt>{}); return;
  }
  // clang-format on
  TS_CHECK(false, "binary: unknown op ", static_cast<int>(op));
}

// Calls fn(T{}) for the binary kernel's input dtypes: the floats and i32/i64.
template <typename Fn>
void dispatch_binary_input(DType dtype, Fn&& fn) {
  // clang-format off
  switch (dtype) {
    case DType::I32: fn(int32_t{}); return;
    case DType::I64: fn(int64_t{}); return;
    default: cuda::dispatch_cuda_float(dtype, "binary", fn);
  }
  // clang-format on
}

// ---- scalar functors for the contiguous map (raw element types in, raw element type out) ----

template <BinaryOp OP, typename T, typename O>
struct BinaryValue {
  __device__ O operator()(T x, T y) const { return from_compute<O>(binary_value<OP>(to_compute(x), to_compute(y))); }
};

template <UnaryOp OP, typename T>
struct UnaryValue {
  __device__ T operator()(T x) const { return store<T>(unary_value<OP>(load(x))); }
};

template <UnaryOp OP, typename T>
struct UnaryGrad {
  __device__ T operator()(T x, T dy) const { return store<T>(load(dy) * unary_slope<OP>(load(x))); }
};

template <typename T>
struct AffineValue {
  acc_t<T> scale, shift;
  __device__ T operator()(T x) const { return store<T>(load(x) * scale + shift); }
};

template <typename T>
struct PowValue {
  acc_t<T> exponent;
  __device__ T operator()(T x) const { return store<T>(d_pow(load(x), exponent)); }
};

template <typename F, typename T, typename O, typename Index>
__global__ void binary_strided_kernel(F f, const T* a, const T* b, O* out, IndexMap<Index, 3> map, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    Index off[3];
    map.offsets(static_cast<Index>(i), off);
    out[off[2]] = f(a[off[0]], b[off[1]]);
  }
}

// The indexed path N elements at a time, for views whose innermost merged dim is a multiple
// of N and has stride 1 in out and stride 1 (loaded as a vector) or 0 (one value repeated)
// in a and b: a bias or per-row scale broadcast costs one index computation per vector.
template <int N, typename F, typename T, typename O, typename Index>
__global__ void binary_strided_vector_kernel(F f, const T* a, const T* b, O* out, IndexMap<Index, 3> map, int64_t n,
                                             bool a_vector, bool b_vector) {
  const int64_t vectors = n / N;
  for (int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; v < vectors; v += int64_t(gridDim.x) * blockDim.x) {
    Index off[3];
    map.offsets(static_cast<Index>(v * N), off);
    PackedVec<T, N> va, vb;
    if (a_vector) {
      va = load_vector<N>(a + off[0]);
    } else {
#pragma unroll
      for (int k = 0; k < N; ++k) va.v[k] = a[off[0]];
    }
    if (b_vector) {
      vb = load_vector<N>(b + off[1]);
    } else {
#pragma unroll
      for (int k = 0; k < N; ++k) vb.v[k] = b[off[1]];
    }
    PackedVec<O, N> r;
#pragma unroll
    for (int k = 0; k < N; ++k) r.v[k] = f(va.v[k], vb.v[k]);
    store_vector<N>(out + off[2], r);
  }
}

template <typename T>
__global__ void find_zero_kernel(const T* b, IndexMap<int64_t, 1> map, int64_t n, unsigned long long* bad) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[1];
    map.offsets(i, off);
    if (b[off[0]] == T(0)) cuda::report_bad_index(bad, i);
  }
}

template <typename F, typename T, typename O>
void run_binary(F f, const Tensor& a, const Tensor& b, const Tensor& out, cudaStream_t stream) {
  if (a.is_contiguous() && b.is_contiguous() && out.is_contiguous()) {
    run_map<2, T, O>("binary", f, a, b, out, stream);
    return;
  }
  const Tensor* operands[3] = {&a, &b, &out};
  CollapsedDims<3> dims = collapse_dims("binary", operands);
  int64_t n = out.numel();
  const T* pa = static_cast<const T*>(a.data_ptr());
  const T* pb = static_cast<const T*>(b.data_ptr());
  O* po = static_cast<O*>(out.data_ptr());
  constexpr int N = cuda::vector_width<T, O>();
  if (vector_friendly(dims, {pa, pb, po}, {N * sizeof(T), N * sizeof(T), N * sizeof(O)}, N)) {
    bool a_vector = dims.strides[0][0] == 1, b_vector = dims.strides[1][0] == 1;
    if (dims.fits_32bit) {
      binary_strided_vector_kernel<N><<<strided_blocks(n / N), cuda::kElementwiseThreads, 0, stream>>>(
          f, pa, pb, po, index_map<uint32_t>(dims), n, a_vector, b_vector);
    } else {
      binary_strided_vector_kernel<N><<<strided_blocks(n / N), cuda::kElementwiseThreads, 0, stream>>>(
          f, pa, pb, po, index_map<int64_t>(dims), n, a_vector, b_vector);
    }
    cuda::check_launch("binary_strided_vector_kernel", stream);
    return;
  }
  if (dims.fits_32bit) {
    binary_strided_kernel<<<strided_blocks(n), cuda::kElementwiseThreads, 0, stream>>>(f, pa, pb, po,
                                                                                       index_map<uint32_t>(dims), n);
  } else {
    binary_strided_kernel<<<strided_blocks(n), cuda::kElementwiseThreads, 0, stream>>>(f, pa, pb, po,
                                                                                       index_map<int64_t>(dims), n);
  }
  cuda::check_launch("binary_strided_kernel", stream);
}

// Integer division: finds a zero divisor before dividing (the CPU throws on one).
template <typename T>
void check_nonzero_divisor(const Tensor& b, Device device, cudaStream_t stream) {
  const Tensor* operands[1] = {&b};
  IndexMap<int64_t, 1> map = index_map<int64_t>(collapse_dims("binary", operands));
  cuda::DeviceIndexCheck check(device, stream);
  int64_t n = b.numel();
  find_zero_kernel<<<strided_blocks(n), cuda::kElementwiseThreads, 0, stream>>>(static_cast<const T*>(b.data_ptr()),
                                                                                map, n, check.slot());
  cuda::check_launch("find_zero_kernel", stream);
  TS_CHECK(check.first_bad("binary: integer division by zero") < 0, "binary: integer division by zero");
}

}  // namespace

void CudaBackend::binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) {
  cuda::check_on_device("binary", "a", a, device_);
  cuda::check_on_device("binary", "b", b, device_);
  cuda::check_on_device("binary", "out", out, device_);
  TS_CHECK(a.shape() == out.shape() && b.shape() == out.shape(), "binary: a ", shape_str(a.shape()), " and b ",
           shape_str(b.shape()), " must be views with out's shape ", shape_str(out.shape()),
           " (broadcast by stride 0)");
  TS_CHECK(a.dtype() == b.dtype(), "binary: a is ", a.dtype(), " but b is ", b.dtype());
  TS_CHECK(out.dtype() == a.dtype() || (is_comparison(op) && out.dtype() == DType::Bool), "binary: out is ",
           out.dtype(), " for ", a.dtype(), " inputs (only comparisons may write bool)");
  TS_CHECK(is_floating(a.dtype()) || a.dtype() == DType::I32 || a.dtype() == DType::I64,
           "binary: expected a floating or index dtype (i32, i64), got ", a.dtype());
  if (out.numel() == 0) return;
  CudaDeviceGuard guard(device_);
  cudaStream_t s = stream();
  dispatch_binary_input(a.dtype(), [&](auto t) {
    using T = decltype(t);
    if constexpr (std::is_integral_v<T>) {
      if (op == BinaryOp::Div) check_nonzero_divisor<T>(b, device(), s);
    }
    dispatch_binary_op(op, [&](auto op_constant) {
      constexpr BinaryOp OP = decltype(op_constant)::value;
      if (out.dtype() == DType::Bool) {
        if constexpr (OP == BinaryOp::Eq || OP == BinaryOp::Gt || OP == BinaryOp::Lt) {
          run_binary<BinaryValue<OP, T, bool>, T, bool>({}, a, b, out, s);
        }
      } else {
        run_binary<BinaryValue<OP, T, T>, T, T>({}, a, b, out, s);
      }
    });
  });
}

void CudaBackend::unary(UnaryOp op, const Tensor& x, const Tensor& out) {
  check_elementwise("unary", x, "out", out, device_);
  if (x.numel() == 0) return;
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(x.dtype(), "unary", [&](auto t) {
    using T = decltype(t);
    dispatch_unary_op(op, "unary", [&](auto op_constant) {
      constexpr UnaryOp OP = decltype(op_constant)::value;
      run_map<1, T, T>("unary", UnaryValue<OP, T>{}, x, Tensor(), out, stream());
    });
  });
}

void CudaBackend::unary_backward(UnaryOp op, const Tensor& x, const Tensor& dL_dy, const Tensor& dL_dx) {
  check_elementwise("unary_backward", x, "dL_dy", dL_dy, device_);
  check_elementwise("unary_backward", x, "dL_dx", dL_dx, device_);
  if (x.numel() == 0) return;
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(x.dtype(), "unary_backward", [&](auto t) {
    using T = decltype(t);
    dispatch_unary_op(op, "unary_backward", [&](auto op_constant) {
      constexpr UnaryOp OP = decltype(op_constant)::value;
      run_map<2, T, T>("unary_backward", UnaryGrad<OP, T>{}, x, dL_dy, dL_dx, stream());
    });
  });
}

void CudaBackend::affine(const Tensor& x, double scale, double shift, const Tensor& out) {
  check_elementwise("affine", x, "out", out, device_);
  if (x.numel() == 0) return;
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(x.dtype(), "affine", [&](auto t) {
    using T = decltype(t);
    using A = acc_t<T>;
    run_map<1, T, T>("affine", AffineValue<T>{static_cast<A>(scale), static_cast<A>(shift)}, x, Tensor(), out,
                     stream());
  });
}

void CudaBackend::pow(const Tensor& x, double exponent, const Tensor& out) {
  check_elementwise("pow", x, "out", out, device_);
  if (x.numel() == 0) return;
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(x.dtype(), "pow", [&](auto t) {
    using T = decltype(t);
    run_map<1, T, T>("pow", PowValue<T>{static_cast<acc_t<T>>(exponent)}, x, Tensor(), out, stream());
  });
}

}  // namespace tessera
