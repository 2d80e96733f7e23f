// CUDA random kernels: fill_uniform, fill_normal and dropout from the counter-based Philox
// stream, with exactly the word-to-value maps written at the top of core/cpu/random.cpp: for
// the same PhiloxState, uniform and dropout (mask and values) are bit-identical to the CPU;
// normal agrees up to the last bit of CUDA's f64 log/cos against the host libm's. Arithmetic
// that decides bits is spelled with explicit IEEE intrinsics (__fmaf_rn, __fdiv_rn, ...) so no
// compiler flag can change it.
//
// Each thread draws whole Philox blocks (4 words): uniform writes 4 elements per block, normal
// 2 (Box-Muller uses two words per element), dropout a group of max(4, 16 bytes) elements with
// 16-byte loads and stores.
#include <cmath>
#include <numbers>

#include "core/cpu/strided.h"
#include "core/cuda/cuda_backend.h"
#include "core/cuda/kernel_utils.cuh"
#include "core/cuda/philox.cuh"
#include "core/cuda/vectorized.cuh"

namespace tessera {

namespace {

using cuda::acc_t;
using cuda::StridedDesc;

constexpr double kTwoPi = 2.0 * std::numbers::pi;
constexpr int kThreads = 256;

__device__ __forceinline__ float fma_rn(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ double fma_rn(double a, double b, double c) { return __fma_rn(a, b, c); }
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double div_rn(double a, double b) { return __ddiv_rn(a, b); }

unsigned int blocks_for(int64_t work_items) {
  int64_t blocks = (work_items + kThreads - 1) / kThreads;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned int>(blocks > (int64_t(1) << 30) ? (int64_t(1) << 30) : blocks);
}

// Element i of dst (row-major over its shape) lives at `index(i)` from data_ptr().
struct ElementIndex {
  StridedDesc desc;
  bool contiguous;
  __device__ __forceinline__ int64_t operator()(int64_t i) const { return contiguous ? i : desc.offset(i); }
};

template <typename T>
__global__ void uniform_kernel(T* dst, ElementIndex index, int64_t n, PhiloxState state, acc_t<T> low, acc_t<T> range) {
  using A = acc_t<T>;
  const int64_t blocks = (n + 3) / 4;
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks; b += int64_t(gridDim.x) * blockDim.x) {
    cuda::PhiloxWords w = cuda::philox4x32_10(state.seed, static_cast<uint64_t>(b), state.offset);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      int64_t i = 4 * b + k;
      if (i < n) dst[index(i)] = cuda::store<T>(fma_rn(range, static_cast<A>(cuda::unit_float(w.w[k])), low));
    }
  }
}

__device__ __forceinline__ double normal_from_words(uint32_t w1, uint32_t w2) {
  double u1 = static_cast<double>((w1 >> 8) + 1) * 0x1p-24;
  double u2 = static_cast<double>(w2 >> 8) * 0x1p-24;
  return __dsqrt_rn(__dmul_rn(-2.0, log(u1))) * cos(__dmul_rn(kTwoPi, u2));
}

template <typename T>
__global__ void normal_kernel(T* dst, ElementIndex index, int64_t n, PhiloxState state, double mean, double stddev) {
  const int64_t blocks = (n + 1) / 2;
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks; b += int64_t(gridDim.x) * blockDim.x) {
    cuda::PhiloxWords w = cuda::philox4x32_10(state.seed, static_cast<uint64_t>(b), state.offset);
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      int64_t i = 2 * b + k;
      if (i < n) dst[index(i)] = cuda::store<T>(__fma_rn(stddev, normal_from_words(w.w[2 * k], w.w[2 * k + 1]), mean));
    }
  }
}

// keep = (word >> 8) >= threshold with threshold = ceil(p * 2^24): the same test as the CPU's
// double(u) >= p, since u = (word >> 8) * 2^-24 exactly.
template <typename T>
__device__ __forceinline__ T dropout_value(T x, uint32_t word, uint32_t threshold, acc_t<T> keep_prob) {
  using A = acc_t<T>;
  return (word >> 8) >= threshold ? cuda::store<T>(div_rn(cuda::load(x), keep_prob)) : cuda::store<T>(A(0));
}

// Thread-group g handles elements [g * G, g * G + G) with words of Philox blocks g * G / 4 ...
template <typename T, int G, bool kVector>
__global__ void dropout_kernel(const T* x, T* out, int64_t n, PhiloxState state, uint32_t threshold,
                               acc_t<T> keep_prob) {
  static_assert(G % 4 == 0, "a group uses whole Philox blocks");
  const int64_t groups = (n + G - 1) / G;
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups; g += int64_t(gridDim.x) * blockDim.x) {
    uint32_t words[G];
#pragma unroll
    for (int j = 0; j < G / 4; ++j) {
      cuda::PhiloxWords w = cuda::philox4x32_10(state.seed, static_cast<uint64_t>(g * (G / 4) + j), state.offset);
#pragma unroll
      for (int k = 0; k < 4; ++k) words[4 * j + k] = w.w[k];
    }
    const int64_t base = g * G;
    if (kVector && base + G <= n) {
      cuda::PackedVec<T, G> v = cuda::load_vector<G>(x + base);
#pragma unroll
      for (int k = 0; k < G; ++k) v.v[k] = dropout_value(v.v[k], words[k], threshold, keep_prob);
      cuda::store_vector<G>(out + base, v);
    } else {
#pragma unroll
      for (int k = 0; k < G; ++k) {
        if (base + k < n) out[base + k] = dropout_value(x[base + k], words[k], threshold, keep_prob);
      }
    }
  }
}

ElementIndex element_index(const Tensor& t) { return {cuda::strided_desc(t), t.is_contiguous()}; }

}  // namespace

void CudaBackend::fill_uniform(const Tensor& dst, PhiloxState state, double low, double high) {
  cuda::check_on_device("fill_uniform", "dst", dst, device_);
  TS_CHECK(low <= high, "fill_uniform: low ", low, " must not exceed high ", high);
  int64_t n = dst.numel();
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(dst.dtype(), "fill_uniform", [&](auto t) {
    using T = decltype(t);
    using A = acc_t<T>;
    if (n == 0) return;
    A lo = static_cast<A>(low);
    A range = static_cast<A>(high) - lo;
    uniform_kernel<<<blocks_for((n + 3) / 4), kThreads, 0, stream()>>>(static_cast<T*>(dst.data_ptr()),
                                                                       element_index(dst), n, state, lo, range);
    cuda::check_launch("uniform_kernel", stream());
  });
}

void CudaBackend::fill_normal(const Tensor& dst, PhiloxState state, double mean, double stddev) {
  cuda::check_on_device("fill_normal", "dst", dst, device_);
  TS_CHECK(stddev >= 0.0, "fill_normal: stddev must be >= 0, got ", stddev);
  int64_t n = dst.numel();
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(dst.dtype(), "fill_normal", [&](auto t) {
    using T = decltype(t);
    if (n == 0) return;
    normal_kernel<<<blocks_for((n + 1) / 2), kThreads, 0, stream()>>>(static_cast<T*>(dst.data_ptr()),
                                                                      element_index(dst), n, state, mean, stddev);
    cuda::check_launch("normal_kernel", stream());
  });
}

void CudaBackend::dropout(const Tensor& x, double p, PhiloxState state, const Tensor& out) {
  cuda::check_on_device("dropout", "x", x, device_);
  cuda::check_on_device("dropout", "out", out, device_);
  TS_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p);
  check_like("dropout", "out", out, "x", x);
  check_contiguous("dropout", "x", x);
  check_contiguous("dropout", "out", out);
  if (p == 0.0) {
    if (out.data_ptr() != x.data_ptr()) copy(x, out);
    return;
  }
  int64_t n = x.numel();
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(x.dtype(), "dropout", [&](auto t) {
    using T = decltype(t);
    using A = acc_t<T>;
    if (n == 0) return;
    constexpr int G = cuda::kVec16<T> < 4 ? 4 : cuda::kVec16<T>;
    const T* px = static_cast<const T*>(x.data_ptr());
    T* po = static_cast<T*>(out.data_ptr());
    auto threshold = static_cast<uint32_t>(std::ceil(p * 16777216.0));
    A keep_prob = static_cast<A>(1.0 - p);
    unsigned int blocks = blocks_for((n + G - 1) / G);
    if (cuda::is_aligned(px, G * sizeof(T)) && cuda::is_aligned(po, G * sizeof(T))) {
      dropout_kernel<T, G, true><<<blocks, kThreads, 0, stream()>>>(px, po, n, state, threshold, keep_prob);
    } else {
      dropout_kernel<T, G, false><<<blocks, kThreads, 0, stream()>>>(px, po, n, state, threshold, keep_prob);
    }
    cuda::check_launch("dropout_kernel", stream());
  });
}

}  // namespace tessera
