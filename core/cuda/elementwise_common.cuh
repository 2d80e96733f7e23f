// Shared by the CUDA elementwise kernels (elementwise.cu: binary, unary, affine, pow;
// swiglu_axpy.cu: SwiGLU and axpy): scalar math in the compute type, the contiguous map with its
// vector path, and the strided (indexed) path's dimension collapsing and index maps.
#pragma once

#include <array>
#include <type_traits>

#include "core/cpu/activation_math.h"
#include "core/cpu/strided.h"
#include "core/cuda/cuda_backend.h"
#include "core/cuda/kernel_utils.cuh"
#include "core/cuda/vectorized.cuh"

namespace tessera::elementwise {

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

inline unsigned int strided_blocks(int64_t n) {
  int64_t blocks = (n + cuda::kElementwiseThreads - 1) / cuda::kElementwiseThreads;
  return static_cast<unsigned int>(blocks > (int64_t(1) << 30) ? (int64_t(1) << 30) : blocks);
}

// The contiguous, same-shape, same-dtype checks of the CPU's elementwise kernels, plus the device.
inline void check_elementwise(const char* kernel, const Tensor& x, const char* name, const Tensor& t, int device) {
  cuda::check_on_device(kernel, "x", x, device);
  cuda::check_on_device(kernel, name, t, device);
  check_like(kernel, name, t, "x", x);
  check_contiguous(kernel, "x", x);
  check_contiguous(kernel, name, t);
}

}  // namespace tessera::elementwise
