// CUDA elementwise kernels: binary (a, b broadcast through strides), unary and its backward,
// affine, pow, axpy and SwiGLU. Same formulas and dtype rules as core/cpu/elementwise.cpp:
// floats compute in acc_t (f64 for f64, f32 otherwise), binary also takes i32/i64 computed in
// int64_t, comparisons write 1/0 in out's dtype (bool allowed), Max/Min propagate NaN, and
// every backward takes the forward input x.
//
// Contiguous operands take the vector path (core/cuda/vectorized.cuh: 16 bytes of the widest
// operand per access). Strided operands (broadcast views, a strided y in axpy) take the indexed
// path: adjacent dims that are contiguous for every operand are merged on the host first, and
// index arithmetic is 32-bit when every offset fits. Where the innermost merged dim has stride
// 1 in out and 1 or 0 in a and b (a bias or a per-row scale broadcast), binary still moves 16
// bytes per access and computes one index per vector. The ops are template parameters, so
// each kernel is straight-line code.
#include <array>
#include <type_traits>

#include "core/cpu/activation_math.h"
#include "core/cpu/strided.h"
#include "core/cuda/cuda_backend.h"
#include "core/cuda/device_error.cuh"
#include "core/cuda/kernel_utils.cuh"
#include "core/cuda/vectorized.cuh"

namespace tessera {

namespace {

using cuda::acc_t;
using cuda::load;
using cuda::load_vector;
using cuda::PackedVec;
using cuda::store;
using cuda::store_vector;

// ---- scalar math in the compute type (float or double overloads, IEEE unless noted by CUDA) ----

__device__ __forceinline__ float d_exp(float x) { return expf(x); }
__device__ __forceinline__ double d_exp(double x) { return exp(x); }
__device__ __forceinline__ float d_log(float x) { return logf(x); }
__device__ __forceinline__ double d_log(double x) { return log(x); }
__device__ __forceinline__ float d_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double d_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float d_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double d_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float d_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double d_abs(double x) { return fabs(x); }
__device__ __forceinline__ float d_pow(float x, float e) { return powf(x, e); }
__device__ __forceinline__ double d_pow(double x, double e) { return pow(x, e); }

template <typename A>
__device__ __forceinline__ A d_sigmoid(A x) {
  return A(1) / (A(1) + d_exp(-x));
}

template <UnaryOp OP, typename A>
__device__ __forceinline__ A unary_value(A x) {
  if constexpr (OP == UnaryOp::Neg) {
    return -x;
  } else if constexpr (OP == UnaryOp::Exp) {
    return d_exp(x);
  } else if constexpr (OP == UnaryOp::Log) {
    return d_log(x);
  } else if constexpr (OP == UnaryOp::Sqrt) {
    return d_sqrt(x);
  } else if constexpr (OP == UnaryOp::Rsqrt) {
    return A(1) / d_sqrt(x);
  } else if constexpr (OP == UnaryOp::Abs) {
    return d_abs(x);
  } else if constexpr (OP == UnaryOp::Relu) {
    return x < A(0) ? A(0) : x;
  } else if constexpr (OP == UnaryOp::Gelu) {
    return A(0.5) * x * (A(1) + d_tanh(A(kSqrt2OverPi) * (x + A(kGeluCubic) * x * x * x)));
  } else if constexpr (OP == UnaryOp::Silu) {
    return x * d_sigmoid(x);
  } else if constexpr (OP == UnaryOp::Tanh) {
    return d_tanh(x);
  } else if constexpr (OP == UnaryOp::Sigmoid) {
    return d_sigmoid(x);
  } else {
    static_assert(OP == UnaryOp::Square);
    return x * x;
  }
}

// f'(x) (Relu' and Abs' are 0 at 0), as in the CPU reference.
template <UnaryOp OP, typename A>
__device__ __forceinline__ A unary_slope(A x) {
  if constexpr (OP == UnaryOp::Neg) {
    return A(-1);
  } else if constexpr (OP == UnaryOp::Exp) {
    return d_exp(x);
  } else if constexpr (OP == UnaryOp::Log) {
    return A(1) / x;
  } else if constexpr (OP == UnaryOp::Sqrt) {
    return A(0.5) / d_sqrt(x);
  } else if constexpr (OP == UnaryOp::Rsqrt) {
    return A(-0.5) / (x * d_sqrt(x));
  } else if constexpr (OP == UnaryOp::Abs) {
    return x > A(0) ? A(1) : (x < A(0) ? A(-1) : A(0));
  } else if constexpr (OP == UnaryOp::Relu) {
    return x > A(0) ? A(1) : A(0);
  } else if constexpr (OP == UnaryOp::Gelu) {
    A inner_slope = A(kSqrt2OverPi) * (A(1) + A(3 * kGeluCubic) * x * x);
    A t = d_tanh(A(kSqrt2OverPi) * (x + A(kGeluCubic) * x * x * x));
    return A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * inner_slope;
  } else if constexpr (OP == UnaryOp::Silu) {
    A s = d_sigmoid(x);
    return s * (A(1) + x * (A(1) - s));
  } else if constexpr (OP == UnaryOp::Tanh) {
    A t = d_tanh(x);
    return A(1) - t * t;
  } else if constexpr (OP == UnaryOp::Sigmoid) {
    A s = d_sigmoid(x);
    return s * (A(1) - s);
  } else {
    static_assert(OP == UnaryOp::Square);
    return A(2) * x;
  }
}

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

template <typename T>
struct SwigluValue {
  __device__ T operator()(T gate, T up) const {
    acc_t<T> g = load(gate);
    return store<T>(g * d_sigmoid(g) * load(up));
  }
};

// out[i] = f(a[i]) (kInputs == 1) or f(a[i], b[i]) on contiguous operands.
template <typename F, typename T, typename O, int kInputs>
struct ContiguousMap {
  F f;
  const T* a;
  const T* b;
  O* out;

  template <int W>
  __device__ void apply(int64_t i) const {
    PackedVec<T, W> va = load_vector<W>(a + i);
    PackedVec<T, W> vb;
    if constexpr (kInputs == 2) vb = load_vector<W>(b + i);
    PackedVec<O, W> r;
#pragma unroll
    for (int k = 0; k < W; ++k) {
      if constexpr (kInputs == 2) {
        r.v[k] = f(va.v[k], vb.v[k]);
      } else {
        r.v[k] = f(va.v[k]);
      }
    }
    store_vector<W>(out + i, r);
  }
};

template <typename T>
struct SwigluBackwardMap {
  const T* gate;
  const T* up;
  const T* dL_dout;
  T* dL_dgate;
  T* dL_dup;

  template <int W>
  __device__ void apply(int64_t i) const {
    using A = acc_t<T>;
    PackedVec<T, W> g = load_vector<W>(gate + i), u = load_vector<W>(up + i), dy = load_vector<W>(dL_dout + i);
    PackedVec<T, W> dg, du;
#pragma unroll
    for (int k = 0; k < W; ++k) {
      A gv = load(g.v[k]), uv = load(u.v[k]), dyv = load(dy.v[k]);
      A s = d_sigmoid(gv);
      dg.v[k] = store<T>(dyv * uv * s * (A(1) + gv * (A(1) - s)));
      du.v[k] = store<T>(dyv * gv * s);
    }
    store_vector<W>(dL_dgate + i, dg);
    store_vector<W>(dL_dup + i, du);
  }
};

template <typename X, typename Y>
__device__ __forceinline__ Y axpy_value(acc_t<Y> alpha, X x, Y y) {
  using A = acc_t<Y>;
  return store<Y>(load(y) + alpha * static_cast<A>(load(x)));
}

template <typename X, typename Y>
struct AxpyMap {
  acc_t<Y> alpha;
  const X* x;
  Y* y;

  template <int W>
  __device__ void apply(int64_t i) const {
    PackedVec<X, W> vx = load_vector<W>(x + i);
    PackedVec<Y, W> vy = load_vector<W>(y + i);
#pragma unroll
    for (int k = 0; k < W; ++k) vy.v[k] = axpy_value(alpha, vx.v[k], vy.v[k]);
    store_vector<W>(y + i, vy);
  }
};

// Runs a one- or two-input map over contiguous tensors, vectorised when every pointer allows.
template <int kInputs, typename T, typename O, typename F>
void run_map(const char* kernel, F f, const Tensor& a, const Tensor& b, const Tensor& out, cudaStream_t stream) {
  constexpr int N = cuda::vector_width<T, O>();
  const T* pa = static_cast<const T*>(a.data_ptr());
  const T* pb = kInputs == 2 ? static_cast<const T*>(b.data_ptr()) : nullptr;
  O* po = static_cast<O*>(out.data_ptr());
  bool vectorize = cuda::is_aligned(pa, N * sizeof(T)) && cuda::is_aligned(po, N * sizeof(O)) &&
                   (kInputs == 1 || cuda::is_aligned(pb, N * sizeof(T)));
  cuda::launch_contiguous<N>(kernel, out.numel(), vectorize, ContiguousMap<F, T, O, kInputs>{f, pa, pb, po}, stream);
}

// ---- the strided (indexed) path ----

// Shape shared by K operands with each operand's strides, innermost dim first, after merging
// adjacent dims that are contiguous with each other in every operand and dropping size-1 dims.
template <typename Index, int K>
struct IndexMap {
  int ndim = 0;
  Index sizes[cuda::kMaxDims] = {};
  Index strides[K][cuda::kMaxDims] = {};

  __device__ __forceinline__ void offsets(Index i, Index (&off)[K]) const {
#pragma unroll
    for (int k = 0; k < K; ++k) off[k] = 0;
    for (int d = 0; d < ndim; ++d) {
      Index q = i / sizes[d];
      Index r = i - q * sizes[d];
#pragma unroll
      for (int k = 0; k < K; ++k) off[k] += r * strides[k][d];
      i = q;
    }
  }
};

template <int K>
struct CollapsedDims {
  int ndim = 0;
  int64_t sizes[cuda::kMaxDims] = {};
  int64_t strides[K][cuda::kMaxDims] = {};
  bool fits_32bit = true;  // every index and offset fits in uint32_t
};

template <int K>
CollapsedDims<K> collapse_dims(const char* kernel, const Tensor* const (&operands)[K]) {
  const Shape& shape = operands[0]->shape();
  TS_CHECK(shape.size() <= static_cast<size_t>(cuda::kMaxDims), kernel, ": CUDA kernels take at most ", cuda::kMaxDims,
           " dims, got shape ", shape);
  CollapsedDims<K> c;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    size_t du = static_cast<size_t>(d);
    if (shape[du] == 1) continue;
    if (c.ndim > 0) {
      int inner = c.ndim - 1;
      bool merge = true;
      for (int k = 0; k < K; ++k) merge &= operands[k]->strides()[du] == c.strides[k][inner] * c.sizes[inner];
      if (merge) {
        c.sizes[inner] *= shape[du];
        continue;
      }
    }
    c.sizes[c.ndim] = shape[du];
    for (int k = 0; k < K; ++k) c.strides[k][c.ndim] = operands[k]->strides()[du];
    ++c.ndim;
  }
  constexpr int64_t kMax32 = 0xffffffffll;
  c.fits_32bit = operands[0]->numel() <= kMax32;
  for (int k = 0; k < K; ++k) {
    int64_t last = 0;
    for (int d = 0; d < c.ndim; ++d) {
      c.fits_32bit = c.fits_32bit && c.strides[k][d] >= 0;
      last += (c.sizes[d] - 1) * c.strides[k][d];
    }
    c.fits_32bit = c.fits_32bit && last <= kMax32;
  }
  return c;
}

template <typename Index, int K>
IndexMap<Index, K> index_map(const CollapsedDims<K>& c) {
  IndexMap<Index, K> m;
  m.ndim = c.ndim;
  for (int d = 0; d < c.ndim; ++d) {
    m.sizes[d] = static_cast<Index>(c.sizes[d]);
    for (int k = 0; k < K; ++k) m.strides[k][d] = static_cast<Index>(c.strides[k][d]);
  }
  return m;
}

// Whether binary_strided_vector_kernel applies: the innermost merged dim holds whole vectors
// of N, has stride 1 in the output (the last operand) and 0 or 1 elsewhere, and every operand
// read or written as vectors is aligned to a vector at each of its vector starts.
template <int K>
bool vector_friendly(const CollapsedDims<K>& dims, const std::array<const void*, K>& pointers,
                     const std::array<size_t, K>& vector_bytes, int N) {
  if (N == 1 || dims.ndim == 0 || dims.sizes[0] % N != 0 || dims.strides[K - 1][0] != 1) return false;
  for (int k = 0; k < K; ++k) {
    if (dims.strides[k][0] == 0) continue;
    if (dims.strides[k][0] != 1 || !cuda::is_aligned(pointers[k], vector_bytes[k])) return false;
    for (int d = 1; d < dims.ndim; ++d) {
      if (dims.strides[k][d] % N != 0) return false;
    }
  }
  return true;
}

unsigned int strided_blocks(int64_t n) {
  int64_t blocks = (n + cuda::kElementwiseThreads - 1) / cuda::kElementwiseThreads;
  return static_cast<unsigned int>(blocks > (int64_t(1) << 30) ? (int64_t(1) << 30) : blocks);
}

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

template <typename X, typename Y>
__global__ void axpy_strided_kernel(acc_t<Y> alpha, const X* x, Y* y, IndexMap<int64_t, 1> map, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[1];
    map.offsets(i, off);
    y[off[0]] = axpy_value(alpha, x[i], y[off[0]]);
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
  TS_CHECK(check.first_bad() < 0, "binary: integer division by zero");
}

// The contiguous, same-shape, same-dtype checks of the CPU's elementwise kernels, plus the device.
void check_elementwise(const char* kernel, const Tensor& x, const char* name, const Tensor& t, int device) {
  cuda::check_on_device(kernel, "x", x, device);
  cuda::check_on_device(kernel, name, t, device);
  check_like(kernel, name, t, "x", x);
  check_contiguous(kernel, "x", x);
  check_contiguous(kernel, name, t);
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

void CudaBackend::axpy(double alpha, const Tensor& x, const Tensor& y) {
  cuda::check_on_device("axpy", "x", x, device_);
  cuda::check_on_device("axpy", "y", y, device_);
  TS_CHECK(x.shape() == y.shape(), "axpy: x ", shape_str(x.shape()), " and y ", shape_str(y.shape()),
           " differ in shape");
  check_contiguous("axpy", "x", x);
  int64_t n = y.numel();
  CudaDeviceGuard guard(device_);
  cudaStream_t s = stream();
  cuda::dispatch_cuda_float(x.dtype(), "axpy", [&](auto xt) {
    using X = decltype(xt);
    cuda::dispatch_cuda_float(y.dtype(), "axpy", [&](auto yt) {
      using Y = decltype(yt);
      using A = acc_t<Y>;
      if (n == 0) return;
      const X* px = static_cast<const X*>(x.data_ptr());
      Y* py = static_cast<Y*>(y.data_ptr());
      if (y.is_contiguous()) {
        constexpr int N = cuda::vector_width<X, Y>();
        bool vectorize = cuda::is_aligned(px, N * sizeof(X)) && cuda::is_aligned(py, N * sizeof(Y));
        cuda::launch_contiguous<N>("axpy", n, vectorize, AxpyMap<X, Y>{static_cast<A>(alpha), px, py}, s);
        return;
      }
      const Tensor* operands[1] = {&y};
      IndexMap<int64_t, 1> map = index_map<int64_t>(collapse_dims("axpy", operands));
      axpy_strided_kernel<<<strided_blocks(n), cuda::kElementwiseThreads, 0, s>>>(static_cast<A>(alpha), px, py, map,
                                                                                  n);
      cuda::check_launch("axpy_strided_kernel", s);
    });
  });
}

void CudaBackend::swiglu(const Tensor& gate, const Tensor& up, const Tensor& out) {
  check_elementwise("swiglu", gate, "up", up, device_);
  check_elementwise("swiglu", gate, "out", out, device_);
  if (gate.numel() == 0) return;
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(gate.dtype(), "swiglu", [&](auto t) {
    using T = decltype(t);
    run_map<2, T, T>("swiglu", SwigluValue<T>{}, gate, up, out, stream());
  });
}

void CudaBackend::swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dL_dout, const Tensor& dL_dgate,
                                  const Tensor& dL_dup) {
  check_elementwise("swiglu_backward", gate, "up", up, device_);
  check_elementwise("swiglu_backward", gate, "dL_dout", dL_dout, device_);
  check_elementwise("swiglu_backward", gate, "dL_dgate", dL_dgate, device_);
  check_elementwise("swiglu_backward", gate, "dL_dup", dL_dup, device_);
  int64_t n = gate.numel();
  if (n == 0) return;
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(gate.dtype(), "swiglu_backward", [&](auto t) {
    using T = decltype(t);
    constexpr int N = cuda::kVec16<T>;
    SwigluBackwardMap<T> map{static_cast<const T*>(gate.data_ptr()), static_cast<const T*>(up.data_ptr()),
                             static_cast<const T*>(dL_dout.data_ptr()), static_cast<T*>(dL_dgate.data_ptr()),
                             static_cast<T*>(dL_dup.data_ptr())};
    bool vectorize = true;
    for (const Tensor* t : {&gate, &up, &dL_dout, &dL_dgate, &dL_dup})
      vectorize = vectorize && cuda::is_aligned(t->data_ptr(), N * sizeof(T));
    cuda::launch_contiguous<N>("swiglu_backward", n, vectorize, map, stream());
  });
}

}  // namespace tessera
