// PPO's clipped policy and value losses, their statistics and the KL estimators against the
// per-token formulas written as plain loops in double; gradients against the closed form
// (0 where the clipped term wins) and finite differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "core/ops/ops.h"
#include "posttrain/losses.h"
#include "support/gradcheck.h"

namespace tessera {
namespace {

constexpr double kClip = 0.2;
// Two rows of four tokens; ratios exp(logp - old) chosen on both sides of [0.8, 1.2], away
// from the bounds, with positive and negative advantages.
const std::vector<double> kLogp = {-1.0, -2.0, -0.5, -3.0, -1.5, -0.7, -2.2, -0.9};
const std::vector<double> kOld = {-1.4, -1.9, -0.5, -2.5, -1.5, -1.1, -2.3, -0.2};
const std::vector<double> kAdv = {1.0, -0.5, 2.0, 1.5, -1.0, -2.0, 0.7, -0.3};
const std::vector<double> kMask = {1, 1, 1, 1, 0, 1, 1, 0};

Tensor mat(const std::vector<double>& v) { return Tensor::from_vector(v, {2, 4}); }

TEST(PpoPolicyLoss, LossStatisticsAndGradientEqualTheLoop) {
  Tensor logp = mat(kLogp).set_requires_grad(true);
  PpoPolicyResult result = ppo_policy_loss(logp, mat(kOld), mat(kAdv), mat(kMask), kClip);
  double count = 0, loss = 0, clipped = 0, kl = 0;
  std::vector<double> grad(kLogp.size(), 0.0);
  for (size_t i = 0; i < kLogp.size(); ++i) count += kMask[i];
  for (size_t i = 0; i < kLogp.size(); ++i) {
    if (kMask[i] == 0) continue;
    double ratio = std::exp(kLogp[i] - kOld[i]);
    double unclipped = -kAdv[i] * ratio, clip = -kAdv[i] * std::clamp(ratio, 1 - kClip, 1 + kClip);
    loss += std::max(unclipped, clip) / count;
    clipped += (clip > unclipped) / count;
    kl += 0.5 * std::pow(kLogp[i] - kOld[i], 2) / count;
    // d/dlogp of -A ratio is -A ratio; the clipped term is flat outside the range.
    grad[i] = clip > unclipped ? 0.0 : -kAdv[i] * ratio / count;
  }
  EXPECT_NEAR(result.loss.item(), loss, 1e-14);
  EXPECT_NEAR(result.clip_fraction.item(), clipped, 1e-15);
  EXPECT_GT(clipped, 0.0);  // the inputs exercise both branches
  EXPECT_LT(clipped, 1.0);
  EXPECT_NEAR(result.approx_kl.item(), kl, 1e-15);
  result.loss.backward();
  std::vector<double> got = logp.grad().to_vector<double>();
  for (size_t i = 0; i < grad.size(); ++i) EXPECT_NEAR(got[i], grad[i], 1e-14) << i;
}

TEST(PpoPolicyLoss, OnPolicyStepIsMinusMeanAdvantage) {
  // First minibatch of a rollout: logp == old, ratio 1, nothing clipped, loss = -mean(A).
  PpoPolicyResult result = ppo_policy_loss(mat(kOld), mat(kOld), mat(kAdv), mat(kMask), kClip);
  double want = 0;
  for (size_t i = 0; i < kAdv.size(); ++i) want -= kMask[i] * kAdv[i] / 6.0;
  EXPECT_NEAR(result.loss.item(), want, 1e-15);
  EXPECT_EQ(result.clip_fraction.item(), 0.0);
  EXPECT_EQ(result.approx_kl.item(), 0.0);
}

TEST(PpoPolicyLoss, BroadcastsOneAdvantagePerSequence) {
  Tensor per_sequence = Tensor::from_vector(std::vector<double>{0.5, -1.5}, {2, 1});
  std::vector<double> expanded = {0.5, 0.5, 0.5, 0.5, -1.5, -1.5, -1.5, -1.5};
  EXPECT_NEAR(ppo_policy_loss(mat(kLogp), mat(kOld), per_sequence, mat(kMask), kClip).loss.item(),
              ppo_policy_loss(mat(kLogp), mat(kOld), mat(expanded), mat(kMask), kClip).loss.item(), 1e-15);
  EXPECT_THROW(ppo_policy_loss(mat(kLogp), mat(kOld), Tensor::zeros({2, 3}, DType::F64), mat(kMask)), Error);
  EXPECT_THROW(ppo_policy_loss(mat(kLogp), mat(kOld), mat(kAdv), mat(kMask), 0.0), Error);
}

const std::vector<double> kValues = {0.5, 1.4, -0.2, 0.9, 2.0, -1.0, 0.3, 0.0};
const std::vector<double> kOldValues = {0.45, 1.0, 0.3, 0.85, 1.0, -0.5, 0.35, 0.1};
const std::vector<double> kReturns = {1.0, 0.2, 0.4, 0.0, 1.0, -2.0, 0.3, 5.0};

TEST(PpoValueLoss, HalfTheMeanOfTheLargerSquaredErrorAndItsGradient) {
  Tensor values = mat(kValues).set_requires_grad(true);
  PpoValueResult result = ppo_value_loss(values, mat(kOldValues), mat(kReturns), mat(kMask), kClip);
  double loss = 0, clipped = 0;
  std::vector<double> grad(kValues.size(), 0.0);
  for (size_t i = 0; i < kValues.size(); ++i) {
    if (kMask[i] == 0) continue;
    double v = kValues[i], v_clip = std::clamp(v, kOldValues[i] - kClip, kOldValues[i] + kClip);
    double e1 = std::pow(v - kReturns[i], 2), e2 = std::pow(v_clip - kReturns[i], 2);
    loss += 0.5 * std::max(e1, e2) / 6.0;
    clipped += (e2 > e1) / 6.0;
    bool inside = v_clip == v;
    grad[i] = e2 > e1 ? (inside ? (v_clip - kReturns[i]) / 6.0 : 0.0) : (v - kReturns[i]) / 6.0;
  }
  EXPECT_NEAR(result.loss.item(), loss, 1e-15);
  EXPECT_NEAR(result.clip_fraction.item(), clipped, 1e-15);
  EXPECT_GT(clipped, 0.0);
  result.loss.backward();
  std::vector<double> got = values.grad().to_vector<double>();
  for (size_t i = 0; i < grad.size(); ++i) EXPECT_NEAR(got[i], grad[i], 1e-15) << i;
}

TEST(PpoLosses, GradientsMatchFiniteDifferences) {
  testing::GradcheckResult policy = testing::gradcheck(
      [](const std::vector<Tensor>& x) { return ppo_policy_loss(x[0], mat(kOld), mat(kAdv), mat(kMask), kClip).loss; },
      {mat(kLogp).set_requires_grad(true)});
  EXPECT_LT(policy.max_relative_error, 1e-7);
  testing::GradcheckResult value = testing::gradcheck(
      [](const std::vector<Tensor>& x) {
        return ppo_value_loss(x[0], mat(kOldValues), mat(kReturns), mat(kMask), kClip).loss;
      },
      {mat(kValues).set_requires_grad(true)});
  EXPECT_LT(value.max_relative_error, 1e-7);
  testing::GradcheckResult k3 =
      testing::gradcheck([](const std::vector<Tensor>& x) { return kl_penalty(x[0], mat(kOld), KlEstimator::K3); },
                         {mat(kLogp).set_requires_grad(true)});
  EXPECT_LT(k3.max_relative_error, 1e-7);
}

TEST(KlPenalty, K1IsTheLogRatioAndK3IsNonNegative) {
  std::vector<double> k1 = kl_penalty(mat(kLogp), mat(kOld), KlEstimator::K1).to_vector<double>();
  std::vector<double> k3 = kl_penalty(mat(kLogp), mat(kOld), KlEstimator::K3).to_vector<double>();
  for (size_t i = 0; i < kLogp.size(); ++i) {
    double log_ratio = kLogp[i] - kOld[i];  // log pi/ref
    EXPECT_NEAR(k1[i], log_ratio, 1e-15);
    EXPECT_NEAR(k3[i], std::exp(-log_ratio) + log_ratio - 1.0, 1e-15);
    EXPECT_GE(k3[i], 0.0);
  }
}

}  // namespace
}  // namespace tessera
