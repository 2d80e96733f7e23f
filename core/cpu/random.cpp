// CPU reference for the random kernels. The mapping from Philox words to values below is the
// contract: the CUDA kernels must reproduce it bit for bit.
//
// Element i of dst (or of x/out for dropout) is the i-th element in row-major order of the
// shape. With w(j) = philox_word(state, j) = philox4x32_10(seed, j / 4, offset)[j % 4] and
// u(j) = uint_to_unit_float(w(j)) = (w(j) >> 8) * 2^-24 (exact in f32, in [0, 1)), and A the
// arithmetic type acc_type<T> (f64 for f64, f32 otherwise):
//  - fill_uniform: dst[i] = T(fma(A(high) - A(low), A(u(i)), A(low))), one fused multiply-add
//    (std::fma / CUDA fma, fmaf: correctly rounded on both devices, never a separate mul + add).
//  - fill_normal (Box-Muller, cosine branch only): element i uses words 2i and 2i+1, i.e.
//    block i/2 of the draw, words (0, 1) for even i and (2, 3) for odd i. In f64 for every T:
//      u1 = ((w(2i) >> 8) + 1) * 2^-24 in (0, 1],  u2 = (w(2i+1) >> 8) * 2^-24 in [0, 1),
//      z = sqrt(-2 * log(u1)) * cos(kTwoPi * u2),   dst[i] = T(fma(stddev, z, mean)),
//    kTwoPi = 6.283185307179586 (2 pi in f64).
//    log and cos are not correctly rounded by either libm, so the devices can differ in the
//    last bit of the f64 value; after rounding to f32/bf16/f16 that almost never shows.
//  - dropout, p in [0, 1): keep(i) = dropout_bits(i) >= ceil(p * 2^16) (core/random.h: the
//    high 16 bits of w(i / 2) for even i, the low 16 for odd i); out[i] = keep(i) ? T(A(x[i]) / A(1.0 - p)) : 0, with 1 - p computed in
//    f64 and the division IEEE (no reciprocal, no fast math). p == 0 copies x without drawing.
// T(v) of an f32 value rounds to nearest even; an f64 value goes to bf16/f16 through f32.
#include <cmath>
#include <numbers>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/strided.h"
#include "core/dropout_bits.h"

namespace tessera {

namespace {

constexpr double kTwoPi = 2.0 * std::numbers::pi;

double normal_from_words(uint32_t w1, uint32_t w2) {
  double u1 = static_cast<double>((w1 >> 8) + 1) * 0x1p-24;
  double u2 = static_cast<double>(w2 >> 8) * 0x1p-24;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
}

}  // namespace

void CpuBackend::fill_uniform(const Tensor& dst, PhiloxState state, double low, double high) {
  TS_CHECK(low <= high, "fill_uniform: low ", low, " must not exceed high ", high);
  int64_t n = dst.numel();
  dispatch_float(dst.dtype(), "fill_uniform", [&](auto t) {
    using T = decltype(t);
    using A = acc_type<T>;
    A lo = static_cast<A>(low);
    A range = static_cast<A>(high) - lo;
    StridedView<T> out(dst);
    for (int64_t i = 0; i < n; ++i) {
      A u = static_cast<A>(uint_to_unit_float(philox_word(state, static_cast<uint64_t>(i))));
      out[i] = T(std::fma(range, u, lo));
    }
  });
}

void CpuBackend::fill_normal(const Tensor& dst, PhiloxState state, double mean, double stddev) {
  TS_CHECK(stddev >= 0.0, "fill_normal: stddev must be >= 0, got ", stddev);
  int64_t n = dst.numel();
  dispatch_float(dst.dtype(), "fill_normal", [&](auto t) {
    using T = decltype(t);
    StridedView<T> out(dst);
    for (int64_t i = 0; i < n; ++i) {
      uint64_t word = 2 * static_cast<uint64_t>(i);
      double z = normal_from_words(philox_word(state, word), philox_word(state, word + 1));
      out[i] = convert<T>(std::fma(stddev, z, mean));
    }
  });
}

void CpuBackend::dropout(const Tensor& x, double p, PhiloxState state, const Tensor& out) {
  TS_CHECK(p >= 0.0 && p < 1.0, "dropout: p must be in [0, 1), got ", p);
  check_like("dropout", "out", out, "x", x);
  check_contiguous("dropout", "x", x);
  check_contiguous("dropout", "out", out);
  if (p == 0.0) {
    copy(x, out);
    return;
  }
  int64_t n = x.numel();
  dispatch_float(x.dtype(), "dropout", [&](auto t) {
    using T = decltype(t);
    using A = acc_type<T>;
    const T* in = x.data<T>();
    T* y = out.data<T>();
    A keep_prob = static_cast<A>(1.0 - p);
    const uint32_t threshold = dropout_threshold(p);
    for (int64_t i = 0; i < n; ++i) {
      bool keep = dropout_bits(state, static_cast<uint64_t>(i)) >= threshold;
      y[i] = keep ? T(static_cast<A>(in[i]) / keep_prob) : T(A(0));
    }
  });
}

}  // namespace tessera
