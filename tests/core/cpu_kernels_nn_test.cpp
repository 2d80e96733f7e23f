// Tests of the CPU normalisation, softmax, cross-entropy, attention and RoPE kernels, called
// directly on CpuBackend. Forward kernels are compared with naive f64 formulas written here
// independently (plain loops over std::vector<double>); every backward kernel is compared with
// central finite differences of its forward kernel in f64; bf16 forwards are compared with the
// f64 result of the same (bf16-representable) inputs. Outputs start as NaN so an element a
// kernel forgets to write, or accumulates into, fails the comparison.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <cstdio>
#include <functional>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/tensor.h"

namespace tessera {
namespace {

using Vec = std::vector<double>;

constexpr double kEps = 1e-5;            // layer/RMS norm epsilon
constexpr double kGradTolerance = 1e-6;  // finite differences vs backward kernels, f64
constexpr double kBf16Tolerance = 1e-2;  // bf16 forward vs f64 forward

Vec random_vec(size_t n, uint32_t seed, double low = -1.0, double high = 1.0) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(low, high);
  Vec v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

// Rounds each value to the nearest bf16 so f64 and bf16 kernels see the same inputs.
Vec round_to_bf16(Vec v) {
  for (double& x : v) x = static_cast<float>(BFloat16(static_cast<float>(x)));
  return v;
}

Tensor tensor(const Vec& values, const Shape& shape, DType dtype = DType::F64) {
  if (dtype == DType::F64) return Tensor::from_vector(values, shape);
  TS_CHECK(dtype == DType::BF16, "test helper: f64 or bf16 only");
  std::vector<BFloat16> rounded(values.begin(), values.end());  // double -> float -> bf16
  return Tensor::from_vector(rounded, shape);
}

Vec values(const Tensor& t) { return t.to_vector<double>(); }

DType stats_dtype(DType dtype) { return dtype == DType::F64 ? DType::F64 : DType::F32; }

Tensor nan_tensor(const Shape& shape, DType dtype) {
  return Tensor::full(shape, std::numeric_limits<double>::quiet_NaN(), dtype);
}

double max_abs(const Vec& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// max_i |got_i - want_i| / max_i |want_i|; infinite on a size mismatch or NaN.
double rel_error(const Vec& got, const Vec& want) {
  if (got.size() != want.size()) return std::numeric_limits<double>::infinity();
  double err = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::abs(got[i] - want[i]);
    if (std::isnan(d)) return std::numeric_limits<double>::infinity();
    err = std::max(err, d);
  }
  return err / std::max(max_abs(want), 1e-300);
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Central differences of L(x) = sum_i g_i f(x)_i: the gradient a backward kernel must give.
Vec numeric_grad(const std::function<Vec(const Vec&)>& f, Vec x, const Vec& g) {
  constexpr double h = 1e-6;
  Vec grad(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double plus = dot(g, f(x));
    x[i] = saved - h;
    const double minus = dot(g, f(x));
    x[i] = saved;
    grad[i] = (plus - minus) / (2 * h);
  }
  return grad;
}

void expect_grad_close(const std::string& what, const Vec& analytic, const Vec& numeric) {
  ASSERT_GT(max_abs(numeric), 1e-3) << what << ": degenerate check, the gradient is ~0";
  const double err = rel_error(analytic, numeric);
  std::printf("[ gradcheck] %-32s max rel error %.2e\n", what.c_str(), err);
  EXPECT_LE(err, kGradTolerance) << what;
}

void expect_close(const std::string& what, const Vec& got, const Vec& want, double tolerance) {
  const double err = rel_error(got, want);
  std::printf("[ compare  ] %-32s max rel error %.2e\n", what.c_str(), err);
  EXPECT_LE(err, tolerance) << what;
}

class CpuKernelsNn : public ::testing::Test {
 protected:
  CpuBackend backend_;
};

// ---------------------------------------------------------------- layer norm and RMS norm

constexpr int64_t R = 6, C = 7;

struct NormOut {
  Tensor y, mean, rstd;
};

NormOut run_layer_norm(Backend& backend, const Tensor& x, const Tensor& w, const Tensor& b) {
  const DType stats = stats_dtype(x.dtype());
  NormOut o{nan_tensor(x.shape(), x.dtype()), nan_tensor({x.size(0)}, stats),
            nan_tensor({x.size(0)}, stats)};
  backend.layer_norm(x, Tensor(), w, b, kEps, o.y, Tensor(), o.mean, o.rstd);
  return o;
}

NormOut run_rms_norm(Backend& backend, const Tensor& x, const Tensor& w) {
  NormOut o{nan_tensor(x.shape(), x.dtype()), {}, nan_tensor({x.size(0)}, stats_dtype(x.dtype()))};
  backend.rms_norm(x, Tensor(), w, kEps, o.y, Tensor(), o.rstd);
  return o;
}

// y = (x - E[x]) / sqrt(Var[x] + eps) * w + b per row; b empty means no bias.
Vec naive_layer_norm(const Vec& x, const Vec& w, const Vec& b, Vec* mean, Vec* rstd) {
  Vec y(x.size());
  for (int64_t r = 0; r < R; ++r) {
    double sum = 0, sum_sq = 0;
    for (int64_t c = 0; c < C; ++c) sum += x[r * C + c];
    const double mu = sum / C;
    for (int64_t c = 0; c < C; ++c) sum_sq += (x[r * C + c] - mu) * (x[r * C + c] - mu);
    const double sigma = std::sqrt(sum_sq / C + kEps);
    for (int64_t c = 0; c < C; ++c) {
      y[r * C + c] = (x[r * C + c] - mu) / sigma * w[c] + (b.empty() ? 0.0 : b[c]);
    }
    mean->push_back(mu);
    rstd->push_back(1 / sigma);
  }
  return y;
}

// y = x / sqrt(mean(x^2) + eps) * w per row.
Vec naive_rms_norm(const Vec& x, const Vec& w, Vec* rstd) {
  Vec y(x.size());
  for (int64_t r = 0; r < R; ++r) {
    double sum_sq = 0;
    for (int64_t c = 0; c < C; ++c) sum_sq += x[r * C + c] * x[r * C + c];
    const double rms = std::sqrt(sum_sq / C + kEps);
    for (int64_t c = 0; c < C; ++c) y[r * C + c] = x[r * C + c] / rms * w[c];
    rstd->push_back(1 / rms);
  }
  return y;
}

TEST_F(CpuKernelsNn, LayerNormMatchesNaive) {
  const Vec x = random_vec(R * C, 1, -1.0, 3.0), w = random_vec(C, 2), b = random_vec(C, 3);
  for (bool with_bias : {true, false}) {
    Vec mean, rstd;
    const Vec want = naive_layer_norm(x, w, with_bias ? b : Vec{}, &mean, &rstd);
    const NormOut o = run_layer_norm(backend_, tensor(x, {R, C}), tensor(w, {C}),
                                     with_bias ? tensor(b, {C}) : Tensor());
    const std::string tag = with_bias ? "layer_norm" : "layer_norm (no bias)";
    expect_close(tag + " y", values(o.y), want, 1e-12);
    expect_close(tag + " mean", values(o.mean), mean, 1e-12);
    expect_close(tag + " rstd", values(o.rstd), rstd, 1e-12);
  }
}

TEST_F(CpuKernelsNn, RmsNormMatchesNaive) {
  const Vec x = random_vec(R * C, 4, -1.0, 3.0), w = random_vec(C, 5);
  Vec rstd;
  const Vec want = naive_rms_norm(x, w, &rstd);
  const NormOut o = run_rms_norm(backend_, tensor(x, {R, C}), tensor(w, {C}));
  expect_close("rms_norm y", values(o.y), want, 1e-12);
  expect_close("rms_norm rstd", values(o.rstd), rstd, 1e-12);
}

TEST_F(CpuKernelsNn, LayerNormBackwardMatchesFiniteDifferences) {
  const Vec x = random_vec(R * C, 6, -1.0, 3.0), w = random_vec(C, 7), b = random_vec(C, 8);
  const Vec g = random_vec(R * C, 9);
  auto forward = [&](const Vec& xv, const Vec& wv, const Vec& bv) {
    return values(run_layer_norm(backend_, tensor(xv, {R, C}), tensor(wv, {C}), tensor(bv, {C})).y);
  };
  const NormOut o = run_layer_norm(backend_, tensor(x, {R, C}), tensor(w, {C}), tensor(b, {C}));
  Tensor dx = nan_tensor({R, C}, DType::F64), dw = nan_tensor({C}, DType::F64),
         db = nan_tensor({C}, DType::F64);
  backend_.layer_norm_backward(tensor(x, {R, C}), tensor(w, {C}), o.mean, o.rstd,
                               tensor(g, {R, C}), Tensor(), dx, dw, db);
  expect_grad_close("layer_norm dL_dx", values(dx),
                    numeric_grad([&](const Vec& v) { return forward(v, w, b); }, x, g));
  expect_grad_close("layer_norm dL_dweight", values(dw),
                    numeric_grad([&](const Vec& v) { return forward(x, v, b); }, w, g));
  expect_grad_close("layer_norm dL_dbias", values(db),
                    numeric_grad([&](const Vec& v) { return forward(x, w, v); }, b, g));

  // Without dL_dbias the other two gradients are unchanged.
  Tensor dx2 = nan_tensor({R, C}, DType::F64), dw2 = nan_tensor({C}, DType::F64);
  backend_.layer_norm_backward(tensor(x, {R, C}), tensor(w, {C}), o.mean, o.rstd,
                               tensor(g, {R, C}), Tensor(), dx2, dw2, Tensor());
  EXPECT_EQ(values(dx2), values(dx));
  EXPECT_EQ(values(dw2), values(dw));
}

TEST_F(CpuKernelsNn, RmsNormBackwardMatchesFiniteDifferences) {
  const Vec x = random_vec(R * C, 10, -1.0, 3.0), w = random_vec(C, 11), g = random_vec(R * C, 12);
  auto forward = [&](const Vec& xv, const Vec& wv) {
    return values(run_rms_norm(backend_, tensor(xv, {R, C}), tensor(wv, {C})).y);
  };
  const NormOut o = run_rms_norm(backend_, tensor(x, {R, C}), tensor(w, {C}));
  Tensor dx = nan_tensor({R, C}, DType::F64), dw = nan_tensor({C}, DType::F64);
  backend_.rms_norm_backward(tensor(x, {R, C}), tensor(w, {C}), o.rstd, tensor(g, {R, C}), Tensor(), dx, dw);
  expect_grad_close("rms_norm dL_dx", values(dx),
                    numeric_grad([&](const Vec& v) { return forward(v, w); }, x, g));
  expect_grad_close("rms_norm dL_dweight", values(dw),
                    numeric_grad([&](const Vec& v) { return forward(x, v); }, w, g));
}

TEST_F(CpuKernelsNn, LayerNormBf16MatchesF64) {
  const Vec x = round_to_bf16(random_vec(R * C, 13, -1.0, 3.0));
  const Vec w = round_to_bf16(random_vec(C, 14)), b = round_to_bf16(random_vec(C, 15));
  const NormOut want = run_layer_norm(backend_, tensor(x, {R, C}), tensor(w, {C}), tensor(b, {C}));
  const NormOut got = run_layer_norm(backend_, tensor(x, {R, C}, DType::BF16),
                                     tensor(w, {C}, DType::BF16), tensor(b, {C}, DType::BF16));
  ASSERT_EQ(got.mean.dtype(), DType::F32);
  expect_close("layer_norm bf16 y", values(got.y), values(want.y), kBf16Tolerance);
  expect_close("layer_norm bf16 mean", values(got.mean), values(want.mean), 1e-5);
  expect_close("layer_norm bf16 rstd", values(got.rstd), values(want.rstd), 1e-5);
}

// ---------------------------------------------------------------- softmax and cross-entropy

constexpr int64_t N = 5, V = 9;

Tensor run_softmax(Backend& backend, const Tensor& x) {
  Tensor y = nan_tensor(x.shape(), x.dtype());
  backend.softmax(x, y);
  return y;
}

// exp(x) / sum(exp(x)) per row, without max subtraction (inputs are small).
Vec naive_softmax(const Vec& x, int64_t rows, int64_t cols) {
  Vec y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double z = 0;
    for (int64_t c = 0; c < cols; ++c) z += std::exp(x[r * cols + c]);
    for (int64_t c = 0; c < cols; ++c) y[r * cols + c] = std::exp(x[r * cols + c]) / z;
  }
  return y;
}

TEST_F(CpuKernelsNn, SoftmaxMatchesNaive) {
  const Vec x = random_vec(R * C, 16, -3.0, 3.0);
  expect_close("softmax", values(run_softmax(backend_, tensor(x, {R, C}))), naive_softmax(x, R, C),
               1e-12);
}

TEST_F(CpuKernelsNn, SoftmaxIsStableForLargeLogits) {
  // softmax(x + 1000) == softmax(x); exp(1000) overflows unless the row max is subtracted.
  const Vec x = random_vec(R * C, 17, -3.0, 3.0);
  Vec shifted = x;
  for (double& v : shifted) v += 1000.0;
  expect_close("softmax (logits + 1000)", values(run_softmax(backend_, tensor(shifted, {R, C}))),
               naive_softmax(x, R, C), 1e-10);
}

TEST_F(CpuKernelsNn, SoftmaxBackwardMatchesFiniteDifferences) {
  const Vec x = random_vec(R * C, 18, -2.0, 2.0), g = random_vec(R * C, 19);
  const Tensor y = run_softmax(backend_, tensor(x, {R, C}));
  Tensor dx = nan_tensor({R, C}, DType::F64);
  backend_.softmax_backward(y, tensor(g, {R, C}), dx);
  auto forward = [&](const Vec& v) { return values(run_softmax(backend_, tensor(v, {R, C}))); };
  expect_grad_close("softmax dL_dx", values(dx), numeric_grad(forward, x, g));
}

TEST_F(CpuKernelsNn, SoftmaxBf16MatchesF64) {
  const Vec x = round_to_bf16(random_vec(R * C, 20, -3.0, 3.0));
  expect_close("softmax bf16", values(run_softmax(backend_, tensor(x, {R, C}, DType::BF16))),
               values(run_softmax(backend_, tensor(x, {R, C}))), kBf16Tolerance);
}

constexpr int64_t kIgnore = -100;
const std::vector<int64_t> kTargets = {3, kIgnore, 0, 8, kIgnore};  // rows 1 and 4 ignored

Tensor run_cross_entropy(Backend& backend, const Tensor& logits, const Tensor& targets) {
  Tensor losses = nan_tensor({logits.size(0)}, stats_dtype(logits.dtype()));
  backend.cross_entropy(logits, targets, kIgnore, losses);
  return losses;
}

TEST_F(CpuKernelsNn, CrossEntropyMatchesNaiveWithIgnoreIndex) {
  const Vec logits = random_vec(N * V, 21, -4.0, 4.0);
  const Vec p = naive_softmax(logits, N, V);
  Vec want(N, 0.0);
  for (int64_t n = 0; n < N; ++n) {
    if (kTargets[n] != kIgnore) want[n] = -std::log(p[n * V + kTargets[n]]);
  }
  const Tensor targets_i64 = Tensor::from_vector(kTargets, {N});
  const std::vector<int32_t> targets_32(kTargets.begin(), kTargets.end());
  const Tensor targets_i32 = Tensor::from_vector(targets_32, {N});
  const Tensor x = tensor(logits, {N, V});
  expect_close("cross_entropy i64 targets", values(run_cross_entropy(backend_, x, targets_i64)),
               want, 1e-12);
  expect_close("cross_entropy i32 targets", values(run_cross_entropy(backend_, x, targets_i32)),
               want, 1e-12);
}

TEST_F(CpuKernelsNn, CrossEntropyBackwardMatchesFiniteDifferences) {
  const Vec logits = random_vec(N * V, 22, -4.0, 4.0), g = random_vec(N, 23);
  const Tensor targets = Tensor::from_vector(kTargets, {N});
  Tensor dlogits = nan_tensor({N, V}, DType::F64);
  backend_.cross_entropy_backward(tensor(logits, {N, V}), targets, kIgnore, tensor(g, {N}),
                                  dlogits);
  auto forward = [&](const Vec& v) {
    return values(run_cross_entropy(backend_, tensor(v, {N, V}), targets));
  };
  const Vec grad = values(dlogits);
  expect_grad_close("cross_entropy dL_dlogits", grad, numeric_grad(forward, logits, g));
  for (int64_t v = 0; v < V; ++v) EXPECT_EQ(grad[1 * V + v], 0.0) << "ignored row 1, column " << v;
}

TEST_F(CpuKernelsNn, CrossEntropyRejectsTargetOutsideVocabulary) {
  const Tensor logits = tensor(random_vec(N * V, 24), {N, V});
  const Tensor targets = Tensor::from_vector(std::vector<int64_t>{3, kIgnore, 9, 0, 1}, {N});
  Tensor losses = nan_tensor({N}, DType::F64), dlogits = nan_tensor({N, V}, DType::F64);
  for (const char* kernel : {"cross_entropy", "cross_entropy_backward"}) {
    try {
      if (std::string(kernel) == "cross_entropy") {
        backend_.cross_entropy(logits, targets, kIgnore, losses);
      } else {
        backend_.cross_entropy_backward(logits, targets, kIgnore, losses, dlogits);
      }
      ADD_FAILURE() << kernel << " accepted target 9 with V = 9";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("row 2"), std::string::npos) << message;
      EXPECT_NE(message.find("target 9"), std::string::npos) << message;
      EXPECT_NE(message.find("V = 9"), std::string::npos) << message;
    }
  }
}

// ---------------------------------------------------------------- attention

struct AttentionCase {
  int64_t B, T, H, KV, D;  // T: query positions
  bool causal;
  int64_t Tk = 0;  // key positions (0: T); the queries are the last T of them

  int64_t keys() const { return Tk > 0 ? Tk : T; }
  Shape q_shape() const { return {B, T, H, D}; }
  Shape kv_shape() const { return {B, keys(), KV, D}; }
};

void PrintTo(const AttentionCase& a, std::ostream* os) {
  *os << "B=" << a.B << " Tq=" << a.T << " Tk=" << a.keys() << " H=" << a.H << " KV=" << a.KV
      << " D=" << a.D << (a.causal ? " causal" : " full");
}

struct AttentionOut {
  Tensor out, lse;
};

double attention_scale(const AttentionCase& a) { return 1.0 / std::sqrt(static_cast<double>(a.D)); }

AttentionOut run_attention(Backend& backend, const AttentionCase& a, const Tensor& q,
                           const Tensor& k, const Tensor& v) {
  AttentionOut o{nan_tensor({a.B, a.T, a.H, a.D}, q.dtype()),
                 nan_tensor({a.B, a.H, a.T}, stats_dtype(q.dtype()))};
  backend.attention(q, k, v, a.causal, attention_scale(a), o.out, o.lse);
  return o;
}

// The definition: kv heads repeated to H heads, the full T x Tk score matrix per (b, h) with
// -inf where key j lies after query i's position i + Tk - T when causal, softmax without max
// subtraction, out = P V.
void naive_attention(const AttentionCase& a, const Vec& q, const Vec& k, const Vec& v, Vec* out,
                     Vec* lse) {
  const int64_t B = a.B, T = a.T, Tk = a.keys(), H = a.H, KV = a.KV, D = a.D;
  const double scale = attention_scale(a);
  out->assign(B * T * H * D, 0.0);
  lse->assign(B * H * T, 0.0);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = h * KV / H;  // kv head of query head h
      auto q_at = [&](int64_t t, int64_t d) { return q[((b * T + t) * H + h) * D + d]; };
      auto k_at = [&](int64_t t, int64_t d) { return k[((b * Tk + t) * KV + g) * D + d]; };
      auto v_at = [&](int64_t t, int64_t d) { return v[((b * Tk + t) * KV + g) * D + d]; };
      std::vector<Vec> scores(T, Vec(Tk));
      for (int64_t i = 0; i < T; ++i) {
        const int64_t position = i + Tk - T;
        for (int64_t j = 0; j < Tk; ++j) {
          double s = 0;
          for (int64_t d = 0; d < D; ++d) s += q_at(i, d) * k_at(j, d);
          scores[i][j] = a.causal && j > position ? -std::numeric_limits<double>::infinity() : scale * s;
        }
      }
      for (int64_t i = 0; i < T; ++i) {
        double z = 0;
        for (int64_t j = 0; j < Tk; ++j) z += std::exp(scores[i][j]);
        (*lse)[(b * H + h) * T + i] = std::log(z);
        for (int64_t d = 0; d < D; ++d) {
          double o = 0;
          for (int64_t j = 0; j < Tk; ++j) o += std::exp(scores[i][j]) / z * v_at(j, d);
          (*out)[((b * T + i) * H + h) * D + d] = o;
        }
      }
    }
  }
}

class CpuKernelsNnAttention : public CpuKernelsNn,
                              public ::testing::WithParamInterface<AttentionCase> {};

TEST_P(CpuKernelsNnAttention, ForwardMatchesNaive) {
  const AttentionCase a = GetParam();
  const Vec q = random_vec(shape_numel(a.q_shape()), 25), k = random_vec(shape_numel(a.kv_shape()), 26),
            v = random_vec(shape_numel(a.kv_shape()), 27);
  Vec want_out, want_lse;
  naive_attention(a, q, k, v, &want_out, &want_lse);
  const AttentionOut o = run_attention(backend_, a, tensor(q, a.q_shape()), tensor(k, a.kv_shape()),
                                       tensor(v, a.kv_shape()));
  expect_close("attention out", values(o.out), want_out, 1e-12);
  expect_close("attention lse", values(o.lse), want_lse, 1e-12);
}

TEST_P(CpuKernelsNnAttention, BackwardMatchesFiniteDifferences) {
  const AttentionCase a = GetParam();
  const Shape q_shape = a.q_shape(), kv_shape = a.kv_shape();
  const Vec q = random_vec(shape_numel(q_shape), 28), k = random_vec(shape_numel(kv_shape), 29),
            v = random_vec(shape_numel(kv_shape), 30), g = random_vec(q.size(), 31);
  auto forward = [&](const Vec& qv, const Vec& kv, const Vec& vv) {
    return values(run_attention(backend_, a, tensor(qv, q_shape), tensor(kv, kv_shape),
                                tensor(vv, kv_shape)).out);
  };
  const AttentionOut o = run_attention(backend_, a, tensor(q, q_shape), tensor(k, kv_shape),
                                       tensor(v, kv_shape));
  Tensor dq = nan_tensor(q_shape, DType::F64), dk = nan_tensor(kv_shape, DType::F64),
         dv = nan_tensor(kv_shape, DType::F64);
  backend_.attention_backward(tensor(q, q_shape), tensor(k, kv_shape), tensor(v, kv_shape), o.out,
                              o.lse, tensor(g, q_shape), a.causal, attention_scale(a), dq, dk, dv);
  expect_grad_close("attention dL_dq", values(dq),
                    numeric_grad([&](const Vec& x) { return forward(x, k, v); }, q, g));
  expect_grad_close("attention dL_dk", values(dk),
                    numeric_grad([&](const Vec& x) { return forward(q, x, v); }, k, g));
  expect_grad_close("attention dL_dv", values(dv),
                    numeric_grad([&](const Vec& x) { return forward(q, k, x); }, v, g));
}

TEST_P(CpuKernelsNnAttention, Bf16MatchesF64) {
  const AttentionCase a = GetParam();
  const Shape q_shape = a.q_shape(), kv_shape = a.kv_shape();
  const Vec q = round_to_bf16(random_vec(shape_numel(q_shape), 32, -2.0, 2.0));
  const Vec k = round_to_bf16(random_vec(shape_numel(kv_shape), 33, -2.0, 2.0));
  const Vec v = round_to_bf16(random_vec(shape_numel(kv_shape), 34));
  const AttentionOut want = run_attention(backend_, a, tensor(q, q_shape), tensor(k, kv_shape),
                                          tensor(v, kv_shape));
  const AttentionOut got =
      run_attention(backend_, a, tensor(q, q_shape, DType::BF16), tensor(k, kv_shape, DType::BF16),
                    tensor(v, kv_shape, DType::BF16));
  ASSERT_EQ(got.lse.dtype(), DType::F32);
  expect_close("attention bf16 out", values(got.out), values(want.out), kBf16Tolerance);
  expect_close("attention bf16 lse", values(got.lse), values(want.lse), 1e-5);
}

// Grouped-query (H = 4, KV = 2) is the case of interest; multi-head and multi-query bracket it.
// Fewer queries than keys (Tq < Tk) is decoding after cached tokens: one query (a decode step)
// and several (a chunk appended to a cache).
INSTANTIATE_TEST_SUITE_P(Heads, CpuKernelsNnAttention,
                         ::testing::Values(AttentionCase{2, 5, 4, 2, 6, false},
                                           AttentionCase{2, 5, 4, 2, 6, true},
                                           AttentionCase{1, 4, 2, 2, 4, true},
                                           AttentionCase{1, 4, 4, 1, 4, false},
                                           AttentionCase{2, 1, 4, 2, 6, true, 5},
                                           AttentionCase{2, 3, 4, 2, 6, true, 7},
                                           AttentionCase{1, 3, 4, 4, 4, false, 6}),
                         [](const ::testing::TestParamInfo<AttentionCase>& info) {
                           const AttentionCase& a = info.param;
                           return "H" + std::to_string(a.H) + "_KV" + std::to_string(a.KV) +
                                  (a.causal ? "_causal" : "_full") +
                                  (a.keys() != a.T ? "_Tq" + std::to_string(a.T) + "_Tk" + std::to_string(a.keys())
                                                   : "");
                         });

TEST_F(CpuKernelsNn, AttentionRejectsMoreQueriesThanKeys) {
  const AttentionCase a{1, 4, 2, 2, 4, true, 3};
  const Tensor q = Tensor::zeros(a.q_shape(), DType::F64), kv = Tensor::zeros(a.kv_shape(), DType::F64);
  EXPECT_THROW(run_attention(backend_, a, q, kv, kv), Error);
}

TEST_F(CpuKernelsNn, AttentionRejectsHeadsNotDivisibleByKvHeads) {
  const AttentionCase a{1, 3, 3, 2, 4, false};
  const Tensor q = Tensor::zeros({1, 3, 3, 4}, DType::F64);
  const Tensor kv = Tensor::zeros({1, 3, 2, 4}, DType::F64);
  EXPECT_THROW(run_attention(backend_, a, q, kv, kv), Error);
}

// ---------------------------------------------------------------- rotary embedding

constexpr int64_t kRopeB = 2, kRopeT = 5, kRopeH = 3, kRopeD = 8, kHalf = kRopeD / 2;
const Shape kRopeShape = {kRopeB, kRopeT, kRopeH, kRopeD};

double rope_angle(int64_t t, int64_t i) {
  return static_cast<double>(t) * std::pow(10000.0, -2.0 * static_cast<double>(i) / kRopeD);
}

struct RopeTables {
  Tensor cos, sin;
};

RopeTables rope_tables() {
  Vec c(kRopeT * kHalf), s(kRopeT * kHalf);
  for (int64_t t = 0; t < kRopeT; ++t) {
    for (int64_t i = 0; i < kHalf; ++i) {
      c[t * kHalf + i] = std::cos(rope_angle(t, i));
      s[t * kHalf + i] = std::sin(rope_angle(t, i));
    }
  }
  return {tensor(c, {kRopeT, kHalf}), tensor(s, {kRopeT, kHalf})};
}

Vec run_rope(Backend& backend, const Vec& x, bool inverse) {
  const RopeTables tables = rope_tables();
  Tensor out = nan_tensor(kRopeShape, DType::F64);
  backend.rope(tensor(x, kRopeShape), tables.cos, tables.sin, inverse, out);
  return values(out);
}

// Each pair (x_i, x_{i+D/2}) as the complex number x_i + i x_{i+D/2}, multiplied by e^{+-i angle}.
Vec naive_rope(const Vec& x, bool inverse) {
  Vec out(x.size());
  for (int64_t bth = 0; bth < kRopeB * kRopeT * kRopeH; ++bth) {
    const int64_t t = (bth / kRopeH) % kRopeT;
    for (int64_t i = 0; i < kHalf; ++i) {
      const std::complex<double> z(x[bth * kRopeD + i], x[bth * kRopeD + i + kHalf]);
      const double angle = inverse ? -rope_angle(t, i) : rope_angle(t, i);
      const std::complex<double> r = z * std::polar(1.0, angle);
      out[bth * kRopeD + i] = r.real();
      out[bth * kRopeD + i + kHalf] = r.imag();
    }
  }
  return out;
}

TEST_F(CpuKernelsNn, RopeMatchesComplexRotation) {
  const Vec x = random_vec(kRopeB * kRopeT * kRopeH * kRopeD, 35);
  expect_close("rope", run_rope(backend_, x, false), naive_rope(x, false), 1e-12);
  expect_close("rope inverse", run_rope(backend_, x, true), naive_rope(x, true), 1e-12);
  expect_close("rope then inverse", run_rope(backend_, run_rope(backend_, x, false), true), x,
               1e-12);
}

TEST_F(CpuKernelsNn, RopeInPlace) {
  const Vec x = random_vec(kRopeB * kRopeT * kRopeH * kRopeD, 36);
  const RopeTables tables = rope_tables();
  Tensor xt = tensor(x, kRopeShape);
  backend_.rope(xt, tables.cos, tables.sin, false, xt);
  expect_close("rope in place", values(xt), naive_rope(x, false), 1e-12);
}

TEST_F(CpuKernelsNn, RopeBackwardMatchesFiniteDifferences) {
  // The backward of a rotation is the opposite rotation, for rope and for its inverse alike.
  const Vec x = random_vec(kRopeB * kRopeT * kRopeH * kRopeD, 37), g = random_vec(x.size(), 38);
  for (bool inverse : {false, true}) {
    auto forward = [&](const Vec& v) { return run_rope(backend_, v, inverse); };
    expect_grad_close(inverse ? "rope inverse dL_dx" : "rope dL_dx",
                      run_rope(backend_, g, !inverse), numeric_grad(forward, x, g));
  }
}

TEST_F(CpuKernelsNn, RopeRejectsOddHeadDim) {
  const Tensor x = Tensor::zeros({1, 2, 1, 3}, DType::F64);
  const Tensor table = Tensor::zeros({2, 1}, DType::F64);
  EXPECT_THROW(backend_.rope(x, table, table, false, x), Error);
}

}  // namespace
}  // namespace tessera
