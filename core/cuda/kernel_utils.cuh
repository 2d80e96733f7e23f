// Helpers shared by the CUDA kernels: device element types per DType, f32/f64 load/store
// conversion, strided-index descriptors, grid sizing and the launch check.
// Convention: kernels compute in acc_t (f64 for f64, f32 otherwise), like the CPU reference.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "core/cuda/cuda_check.h"
#include "core/tensor.h"

namespace tessera::cuda {

template <typename T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <typename T>
__device__ __forceinline__ acc_t<T> load(const T& v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(v);
  } else if constexpr (std::is_same_v<T, __half>) {
    return __half2float(v);
  } else {
    return static_cast<acc_t<T>>(v);
  }
}

template <typename T, typename A>
__device__ __forceinline__ T store(A v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, __half>) {
    return __float2half_rn(static_cast<float>(v));
  } else {
    return static_cast<T>(v);
  }
}

// Calls fn(T{}) with the device type of a floating dtype.
template <typename Fn>
void dispatch_cuda_float(DType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case DType::F32: fn(float{}); return;
    case DType::F64: fn(double{}); return;
    case DType::BF16: fn(__nv_bfloat16{}); return;
    case DType::F16: fn(__half{}); return;
    default: break;
  }
  TS_CHECK(false, op, ": expected a floating dtype (f32, f64, bf16, f16), got ", dtype_name(dtype));
}

// Shape and strides of a view, by value into a kernel (up to kMaxDims dims).
constexpr int kMaxDims = 8;
struct StridedDesc {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};

  // Element offset (from the view's first element) of row-major index i.
  __host__ __device__ int64_t offset(int64_t i) const {
    int64_t off = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      off += (i % sizes[d]) * strides[d];
      i /= sizes[d];
    }
    return off;
  }
};

StridedDesc strided_desc(const Tensor& t);

// Blocks for n elements at `threads` per block, each thread handling `per_thread` elements.
inline unsigned int grid_for(int64_t n, int threads, int per_thread = 1) {
  int64_t blocks = (n + int64_t(threads) * per_thread - 1) / (int64_t(threads) * per_thread);
  return static_cast<unsigned int>(blocks < 1 ? 1 : blocks);
}

// Checks the last launch; with TESSERA_CUDA_SYNC_DEBUG=1 in the environment also waits for
// the kernel and reports its execution error at the launch that caused it.
void check_launch(const char* kernel, cudaStream_t stream);

// Requires a tensor on `device` (kernel names its argument in the message).
void check_on_device(const char* kernel, const char* name, const Tensor& t, int device);

// kN elements of T moved as one aligned access (16 bytes when kN = kVec16<T>).
template <typename T, int kN>
struct alignas(sizeof(T) * kN) PackedVec {
  T v[kN];
};

// Elements of T per 16-byte access.
template <typename T>
constexpr int kVec16 = static_cast<int>(16 / sizeof(T));

inline bool is_aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Device-only helpers below; .cpp files (compiled by the host compiler) may include this
// header for the host-side declarations above.
#ifdef __CUDACC__
struct SumOp {
  template <typename A>
  __device__ A operator()(A a, A b) const { return a + b; }
};
struct MaxOp {
  template <typename A>
  __device__ A operator()(A a, A b) const { return ::fmax(a, b); }  // NaN-ignoring, so commutative
};

// Reduces v over the block with op (identity: op's neutral value); every thread receives the
// same bits (a fixed butterfly, so the result is deterministic for a given block size).
// blockDim.x must be a multiple of 32 (at most 1024) and every thread of the block must call
// it; it may be called repeatedly.
template <typename A, typename Op>
__device__ A block_reduce(A v, Op op, A identity) {
  __shared__ A partial[32];
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  __syncthreads();  // an earlier call's readers are done with `partial`
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < warps ? partial[lane] : identity;
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

#endif  // __CUDACC__

}  // namespace tessera::cuda
