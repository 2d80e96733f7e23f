// CUDA random kernels: fill_uniform, fill_normal and dropout from the counter-based Philox
// stream, with exactly the word-to-value maps written at the top of core/cpu/random.cpp: for
// the same PhiloxState, uniform and dropout (mask and values) are bit-identical to the CPU;
// normal agrees up to the last bit of CUDA's f64 log/cos against the host libm's. Arithmetic
// that decides bits is spelled with explicit IEEE intrinsics (__fmaf_rn, __fdiv_rn, ...) so no
// compiler flag can change it.
//
// Each thread draws whole Philox blocks (4 words): uniform writes 4 elements per block, normal
// 2 (Box-Muller uses two words per element); dropout (16 bits per element) takes a group of
// max(8 elements, 16 bytes) with vector loads and stores. bf16 dropout multiplies by 1 / keep_prob and divides only near a
// bf16 rounding tie, with the same bits as the division (see kept_value).
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

template <typename T>
struct DropoutArgs {
  const T* x;
  T* out;
  int64_t n;
  PhiloxState state;
  uint32_t threshold;  // keep = 16 random bits >= threshold
  acc_t<T> keep_prob;
  acc_t<T> inverse_keep_prob;  // 1 / keep_prob rounded to nearest
};

// x / keep_prob rounded to T as the CPU does it (the quotient in acc_t<T>, then rounded to T).
// bf16: q = x * (1 / keep_prob) is within 4 f32 steps (bit patterns) of the rounded quotient
// (two relative errors of 2^-24 and a rounding), so both round to the same bf16 unless q's
// low 16 bits lie within 4 of the tie 0x8000 (or q is huge, inf or nan): those few take the
// IEEE division. (Checked on an H100 for every bf16 value at 18 values of p.)
template <typename T>
__device__ __forceinline__ acc_t<T> kept_value(T x, const DropoutArgs<T>& a) {
  const acc_t<T> xf = cuda::load(x);
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    const float q = __fmul_rn(xf, a.inverse_keep_prob);
    const uint32_t low = __float_as_uint(q) & 0xFFFFu;
    if (low - 0x7FFCu <= 8u || !(fabsf(q) < 0x1p126f)) return div_rn(xf, a.keep_prob);
    return q;
  } else {
    return div_rn(xf, a.keep_prob);
  }
}

// Thread-group g handles elements [g * G, g * G + G) with Philox blocks g * G / 8 ...: element
// i uses 16 bits of word i / 2 (high half for even i), as core/random.h's dropout_bits on the
// CPU, and keep = bits >= threshold = ceil(p * 2^16). The load is issued before the Philox
// rounds. (A grid of resident threads that loads its next group during this one's rounds
// measured slower on an H100.)
template <typename T, int G, bool kVector>
__global__ void __launch_bounds__(kThreads) dropout_kernel(DropoutArgs<T> a) {
  static_assert(G % 8 == 0, "a group uses whole Philox blocks (8 elements each)");
  using A = acc_t<T>;
  const int64_t groups = (a.n + G - 1) / G;
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups; g += int64_t(gridDim.x) * blockDim.x) {
    const int64_t base = g * G;
    const bool whole = kVector && base + G <= a.n;
    cuda::PackedVec<T, G> v;
    if (whole) {
      v = cuda::load_vector<G>(a.x + base);
    } else {
#pragma unroll
      for (int k = 0; k < G; ++k) v.v[k] = base + k < a.n ? a.x[base + k] : T{};
    }
#pragma unroll
    for (int j = 0; j < G / 8; ++j) {
      const cuda::PhiloxWords w =
          cuda::philox4x32_10(a.state.seed, static_cast<uint64_t>(g * (G / 8) + j), a.state.offset);
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const uint32_t bits = k % 2 == 0 ? w.w[k / 2] >> 16 : w.w[k / 2] & 0xFFFFu;
        const A kept = kept_value(v.v[8 * j + k], a);
        v.v[8 * j + k] = cuda::store<T>(bits >= a.threshold ? kept : A(0));
      }
    }
    if (whole) {
      cuda::store_vector<G>(a.out + base, v);
    } else {
#pragma unroll
      for (int k = 0; k < G; ++k) {
        if (base + k < a.n) a.out[base + k] = v.v[k];
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
    const auto threshold = static_cast<uint32_t>(std::ceil(p * 65536.0));  // dropout_threshold
    const A keep_prob = static_cast<A>(1.0 - p);
    const T* px = static_cast<const T*>(x.data_ptr());
    T* po = static_cast<T*>(out.data_ptr());
    const DropoutArgs<T> a{px, po, n, state, threshold, keep_prob, A(1) / keep_prob};
    constexpr int G = cuda::kVec16<T> < 8 ? 8 : cuda::kVec16<T>;
    const unsigned int blocks = blocks_for((n + G - 1) / G);
    if (cuda::is_aligned(a.x, G * sizeof(T)) && cuda::is_aligned(a.out, G * sizeof(T))) {
      dropout_kernel<T, G, true><<<blocks, kThreads, 0, stream()>>>(a);
    } else {
      dropout_kernel<T, G, false><<<blocks, kThreads, 0, stream()>>>(a);
    }
    cuda::check_launch("dropout_kernel", stream());
  });
}

}  // namespace tessera
