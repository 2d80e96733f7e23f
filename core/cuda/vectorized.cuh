// Vectorised access for bandwidth-bound kernels: load_vector/store_vector move a PackedVec
// (core/cuda/kernel_utils.cuh) of N elements in one instruction (16 bytes of the widest
// operand), and launch_contiguous runs an elementwise functor over n contiguous elements, N at
// a time, with the tail (fewer than N elements) done one by one.
//
// A functor for launch_contiguous has `template <int W> __device__ void apply(int64_t i) const`
// that handles elements [i, i + W): W == N on aligned vectors, W == 1 for the tail and for
// pointers that are not aligned to a whole vector (the launcher is told by `vectorize`).
#pragma once

#include <cstdint>

#include "core/cuda/kernel_utils.cuh"

namespace tessera::cuda {

template <int N, typename T>
__device__ __forceinline__ PackedVec<T, N> load_vector(const T* p) {
  return *reinterpret_cast<const PackedVec<T, N>*>(p);
}

template <int N, typename T>
__device__ __forceinline__ void store_vector(T* p, const PackedVec<T, N>& v) {
  *reinterpret_cast<PackedVec<T, N>*>(p) = v;
}

// Elements per 16-byte access of the widest of the given element types.
template <typename... Ts>
__host__ __device__ constexpr int vector_width() {
  size_t widest = 1;
  ((widest = sizeof(Ts) > widest ? sizeof(Ts) : widest), ...);
  return static_cast<int>(16 / widest);
}

template <int N, typename Op>
__global__ void contiguous_kernel(int64_t n, bool vectorize, Op op) {
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t vectors = vectorize ? n / N : 0;
  for (int64_t v = tid; v < vectors; v += stride) op.template apply<N>(v * N);
  for (int64_t i = vectors * N + tid; i < n; i += stride) op.template apply<1>(i);
}

constexpr int kElementwiseThreads = 256;

// Runs op over n contiguous elements, N per access when `vectorize` (every pointer the
// functor touches is aligned to N of its elements).
template <int N, typename Op>
void launch_contiguous(const char* kernel, int64_t n, bool vectorize, const Op& op, cudaStream_t stream) {
  if (n == 0) return;
  int64_t units = vectorize ? n / N + n % N : n;
  int64_t blocks = (units + kElementwiseThreads - 1) / kElementwiseThreads;
  if (blocks > (int64_t(1) << 30)) blocks = int64_t(1) << 30;  // the grid-stride loop does the rest
  contiguous_kernel<N><<<static_cast<unsigned int>(blocks), kElementwiseThreads, 0, stream>>>(n, vectorize, op);
  check_launch(kernel, stream);
}

}  // namespace tessera::cuda
