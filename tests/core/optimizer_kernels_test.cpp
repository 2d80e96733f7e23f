// Tests of the CPU optimizer-side kernels, called directly on CpuBackend: AdamW against a
// hand-written f64 loop over three steps and against its closed form at step 1; the fused
// cross-entropy against the unfused cross_entropy + cross_entropy_backward kernels (also
// writing its gradient over the logits in place); the sum of squares against an f64 sum;
// unscale-and-check with finite values, inf and NaN. Outputs start as NaN where a kernel
// writes them, so an element a kernel forgets fails the comparison.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/tensor.h"

namespace tessera {
namespace {

using Vec = std::vector<double>;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Vec random_vec(size_t n, uint32_t seed, double low = -1.0, double high = 1.0) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(low, high);
  Vec v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

Tensor tensor(const Vec& values, const Shape& shape, DType dtype) {
  return Tensor::from_vector(values, shape).to(dtype);
}

// max_i |got_i - want_i| / max_i |want_i|; infinite on a size mismatch or NaN.
double rel_error(const Vec& got, const Vec& want) {
  if (got.size() != want.size()) return std::numeric_limits<double>::infinity();
  double err = 0, scale = 1e-300;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::abs(got[i] - want[i]);
    if (std::isnan(d)) return std::numeric_limits<double>::infinity();
    err = std::max(err, d);
    scale = std::max(scale, std::abs(want[i]));
  }
  return err / scale;
}

void expect_close(const std::string& what, const Vec& got, const Vec& want, double tolerance) {
  const double err = rel_error(got, want);
  std::printf("[ compare  ] %-40s max rel error %.2e\n", what.c_str(), err);
  EXPECT_LE(err, tolerance) << what;
}

class CpuOptimizerKernels : public ::testing::Test {
 protected:
  CpuBackend backend_;
};

// ---------------------------------------------------------------- AdamW

// One parameter's state for the hand loop: everything the kernel keeps, in f64 but rounded
// to what the kernel stores (f32 state, bf16/f32 gradient) between steps.
struct HandState {
  Vec p, m, v;
};

void hand_adamw_step(HandState& s, const Vec& grad, const AdamWHyper& h) {
  const double bias1 = 1.0 - std::pow(h.beta1, double(h.step));
  const double bias2 = 1.0 - std::pow(h.beta2, double(h.step));
  for (size_t i = 0; i < s.p.size(); ++i) {
    const double g = grad[i] / h.grad_scale;
    s.m[i] = h.beta1 * s.m[i] + (1.0 - h.beta1) * g;
    s.v[i] = h.beta2 * s.v[i] + (1.0 - h.beta2) * g * g;
    const double m_hat = s.m[i] / bias1, v_hat = s.v[i] / bias2;
    s.p[i] = s.p[i] - h.lr * (m_hat / (std::sqrt(v_hat) + h.eps) + h.weight_decay * s.p[i]);
    s.m[i] = float(s.m[i]);
    s.v[i] = float(s.v[i]);
    s.p[i] = float(s.p[i]);
  }
}

TEST_F(CpuOptimizerKernels, AdamWMatchesAHandLoopOverThreeSteps) {
  AdamWHyper hyper;
  hyper.lr = 3e-3;
  hyper.beta1 = 0.9;
  hyper.beta2 = 0.95;
  hyper.eps = 1e-8;
  hyper.weight_decay = 0.1;
  hyper.grad_scale = 4.0;
  const std::vector<int64_t> sizes = {5, 64, 1};
  const std::vector<DType> grad_dtypes = {DType::F32, DType::BF16, DType::F16};
  std::vector<AdamWParam> params;
  std::vector<HandState> hand;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const Vec p0 = random_vec(size_t(sizes[i]), 10 + uint32_t(i));
    AdamWParam p;
    p.master = tensor(p0, {sizes[i]}, DType::F32);
    p.exp_avg = Tensor::zeros({sizes[i]});
    p.exp_avg_sq = Tensor::zeros({sizes[i]});
    if (i != 2) p.model_copy = Tensor::full({sizes[i]}, kNaN, i == 0 ? DType::BF16 : DType::F16);
    params.push_back(p);
    hand.push_back({p.master.to_vector<double>(), Vec(p0.size(), 0.0), Vec(p0.size(), 0.0)});
  }
  for (int64_t step = 1; step <= 3; ++step) {
    hyper.step = step;
    for (size_t i = 0; i < sizes.size(); ++i) {
      params[i].grad = tensor(random_vec(size_t(sizes[i]), 100 * uint32_t(step) + uint32_t(i), -2, 2),
                              {sizes[i]}, grad_dtypes[i]);
      hand_adamw_step(hand[i], params[i].grad.to_vector<double>(), hyper);
    }
    backend_.adamw(params, hyper);
    for (size_t i = 0; i < sizes.size(); ++i) {
      const std::string at = "step " + std::to_string(step) + " param " + std::to_string(i);
      expect_close(at + " master", params[i].master.to_vector<double>(), hand[i].p, 1e-6);
      expect_close(at + " exp_avg", params[i].exp_avg.to_vector<double>(), hand[i].m, 1e-6);
      expect_close(at + " exp_avg_sq", params[i].exp_avg_sq.to_vector<double>(), hand[i].v, 1e-6);
      if (params[i].model_copy.defined()) {
        // The model copy is the master rounded to its dtype, exactly.
        EXPECT_EQ(params[i].model_copy.to_vector<double>(),
                  params[i].master.to(params[i].model_copy.dtype()).to_vector<double>())
            << at;
      }
    }
  }
}

TEST_F(CpuOptimizerKernels, AdamWFirstStepIsSignDescentPlusDecay) {
  // At step 1 from zero moments, m_hat = g and v_hat = g^2: p1 = p0 - lr (g / (|g| + eps) + wd p0).
  AdamWHyper hyper;
  hyper.lr = 0.01;
  hyper.weight_decay = 0.5;
  hyper.eps = 1e-3;
  hyper.grad_scale = 2.0;
  const Vec p0 = random_vec(50, 1), grad = random_vec(50, 2, -3, 3);
  AdamWParam p{tensor(p0, {5, 10}, DType::F32), tensor(grad, {5, 10}, DType::F32), Tensor::zeros({5, 10}),
               Tensor::zeros({5, 10}), Tensor()};
  const Vec p0_f32 = p.master.to_vector<double>(), grad_f32 = p.grad.to_vector<double>();
  backend_.adamw({p}, hyper);
  Vec want(p0.size());
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = grad_f32[i] / hyper.grad_scale;
    want[i] = p0_f32[i] - hyper.lr * (g / (std::abs(g) + hyper.eps) + hyper.weight_decay * p0_f32[i]);
  }
  expect_close("step 1 closed form", p.master.to_vector<double>(), want, 1e-6);
}

TEST_F(CpuOptimizerKernels, AdamWRejectsBadArguments) {
  auto param = [] {
    return AdamWParam{Tensor::zeros({4}), Tensor::zeros({4}), Tensor::zeros({4}), Tensor::zeros({4}), Tensor()};
  };
  AdamWHyper hyper;
  AdamWParam p = param();
  p.master = Tensor::zeros({4}, DType::BF16);
  EXPECT_THROW(backend_.adamw({p}, hyper), Error);  // master must be f32
  p = param();
  p.grad = Tensor::zeros({5});
  EXPECT_THROW(backend_.adamw({p}, hyper), Error);  // shape mismatch
  p = param();
  p.exp_avg = Tensor::zeros({4}, DType::F64);
  EXPECT_THROW(backend_.adamw({p}, hyper), Error);
  p = param();
  p.model_copy = Tensor::zeros({4}, DType::F32);
  EXPECT_THROW(backend_.adamw({p}, hyper), Error);  // model copy must be 16-bit
  p = param();
  p.grad = Tensor::zeros({4, 2}).narrow(1, 0, 1).squeeze(1);
  EXPECT_THROW(backend_.adamw({p}, hyper), Error);  // strided gradient
  hyper.step = 0;
  EXPECT_THROW(backend_.adamw({param()}, hyper), Error);
  hyper = AdamWHyper();
  hyper.grad_scale = 0.0;
  EXPECT_THROW(backend_.adamw({param()}, hyper), Error);
}

// ---------------------------------------------------------------- fused cross-entropy

TEST_F(CpuOptimizerKernels, FusedCrossEntropyMatchesTheUnfusedKernels) {
  constexpr int64_t N = 7, V = 13, kIgnore = -100;
  for (DType dtype : {DType::F64, DType::F32, DType::BF16}) {
    for (DType index : {DType::I32, DType::I64}) {
      const DType stats = dtype == DType::F64 ? DType::F64 : DType::F32;
      const Tensor logits = tensor(random_vec(N * V, 5, -4, 4), {N, V}, dtype);
      const Tensor targets = Tensor::from_vector<int64_t>({3, kIgnore, 0, 12, 7, kIgnore, 5}, {N}).to(index);
      const Tensor dL_dlosses = tensor(random_vec(N, 6, 0.5, 2), {N}, stats);

      Tensor want_losses = Tensor::full({N}, kNaN, stats), want_grad = Tensor::full({N, V}, kNaN, dtype);
      backend_.cross_entropy(logits, targets, kIgnore, want_losses);
      backend_.cross_entropy_backward(logits, targets, kIgnore, dL_dlosses, want_grad);

      Tensor losses = Tensor::full({N}, kNaN, stats), grad = Tensor::full({N, V}, kNaN, dtype);
      backend_.cross_entropy_fused(logits, targets, kIgnore, dL_dlosses, losses, grad);
      const std::string what = std::string(dtype_name(dtype)) + " " + std::string(dtype_name(index));
      const double tolerance = dtype == DType::BF16 ? 1e-2 : dtype == DType::F32 ? 1e-6 : 1e-14;
      expect_close(what + " losses", losses.to_vector<double>(), want_losses.to_vector<double>(), tolerance);
      expect_close(what + " dL_dlogits", grad.to_vector<double>(), want_grad.to_vector<double>(), tolerance);

      // In place: the gradient overwrites the logits.
      Tensor in_place = logits.clone();
      Tensor losses2 = Tensor::full({N}, kNaN, stats);
      backend_.cross_entropy_fused(in_place, targets, kIgnore, dL_dlosses, losses2, in_place);
      expect_close(what + " losses (in place)", losses2.to_vector<double>(), want_losses.to_vector<double>(),
                   tolerance);
      expect_close(what + " dL_dlogits (in place)", in_place.to_vector<double>(), want_grad.to_vector<double>(),
                   tolerance);
    }
  }
}

TEST_F(CpuOptimizerKernels, FusedCrossEntropyRejectsBadTargetsBeforeWriting) {
  const Tensor logits = tensor(random_vec(3 * 4, 7), {3, 4}, DType::F32);
  const Tensor original = logits.clone();
  const Tensor dL_dlosses = Tensor::ones({3});
  for (int64_t bad : {4, -1}) {
    const Tensor targets = Tensor::from_vector<int64_t>({0, 1, bad}, {3});
    Tensor losses = Tensor::full({3}, kNaN);
    EXPECT_THROW(backend_.cross_entropy_fused(logits, targets, -100, dL_dlosses, losses, logits), Error);
    EXPECT_EQ(logits.to_vector<float>(), original.to_vector<float>()) << "target " << bad;
  }
  const Tensor targets = Tensor::from_vector<int64_t>({0, 1, 2}, {3});
  Tensor losses = Tensor::full({3}, kNaN), grad = Tensor::full({3, 4}, kNaN);
  EXPECT_THROW(backend_.cross_entropy_fused(logits, targets.to(DType::F32), -100, dL_dlosses, losses, grad), Error);
  EXPECT_THROW(backend_.cross_entropy_fused(logits, targets, -100, Tensor::ones({3}, DType::F64), losses, grad),
               Error);
  EXPECT_THROW(backend_.cross_entropy_fused(logits, targets, -100, dL_dlosses, losses, Tensor::full({3, 5}, 0.0)),
               Error);
}

// ---------------------------------------------------------------- sum of squares, unscale

TEST_F(CpuOptimizerKernels, SumSquaresAddsEveryTensorInF64) {
  const std::vector<Tensor> tensors = {tensor(random_vec(100, 8), {10, 10}, DType::F32),
                                       tensor(random_vec(7, 9), {7}, DType::BF16),
                                       tensor(random_vec(33, 10), {3, 11}, DType::F64)};
  double want = 0;
  for (const Tensor& t : tensors)
    for (double x : t.to_vector<double>()) want += x * x;
  Tensor out = Tensor::full({1}, kNaN);
  backend_.sum_squares(tensors, out);
  EXPECT_EQ(out.item(), double(float(want)));
  backend_.sum_squares({}, out);
  EXPECT_EQ(out.item(), 0.0);
  EXPECT_THROW(backend_.sum_squares(tensors, Tensor::zeros({1}, DType::F64)), Error);
  EXPECT_THROW(backend_.sum_squares({Tensor::zeros({4, 2}).transpose(0, 1)}, out), Error);
}

TEST_F(CpuOptimizerKernels, UnscaleMultipliesAndFlagsInfAndNaN) {
  const Vec a = random_vec(20, 11, -100, 100);
  Tensor x = tensor(a, {4, 5}, DType::F32), y = tensor(a, {20}, DType::BF16);
  Tensor found = Tensor::zeros({1});
  backend_.unscale_and_check_finite({x, y}, 0.25, found);
  EXPECT_EQ(found.item(), 0.0);
  const Vec x_got = x.to_vector<double>(), y_got = y.to_vector<double>();
  const Vec y_in = tensor(a, {20}, DType::BF16).to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(x_got[i], double(float(a[i]) * 0.25f));
    EXPECT_EQ(y_got[i], y_in[i] * 0.25);  // exact: a power of two
  }

  for (double bad : {std::numeric_limits<double>::infinity(), kNaN}) {
    Vec values = a;
    values[13] = bad;
    Tensor clean = tensor(a, {20}, DType::F32), dirty = tensor(values, {20}, DType::F16);
    Tensor flag = Tensor::zeros({1});
    backend_.unscale_and_check_finite({clean, dirty}, 0.5, flag);
    EXPECT_EQ(flag.item(), 1.0) << bad;
    EXPECT_EQ(dirty.to_vector<double>()[0], double(Half(float(a[0]))) * 0.5);
  }
  // A finite step leaves an earlier flag alone.
  Tensor flag = Tensor::ones({1});
  backend_.unscale_and_check_finite({x}, 1.0, flag);
  EXPECT_EQ(flag.item(), 1.0);
  EXPECT_THROW(backend_.unscale_and_check_finite({x}, 1.0, Tensor::zeros({2})), Error);
}

}  // namespace
}  // namespace tessera
