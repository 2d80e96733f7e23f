// GAE against its definition as a discounted sum of TD residuals (not the recursion the code
// uses) on 5-step rows whose masks start late or end early; GRPO advantages of two groups
// against hand-computed values; whitening and PPO's per-token rewards against their formulas.
#include "posttrain/advantages.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/ops/ops.h"

namespace tessera {
namespace {

constexpr int64_t kT = 5;
const std::vector<double> kRewards = {0.1, -0.2, 1.0, 7.0, 7.0, 9.0, 0.0, 0.3, -0.1, 2.0};
const std::vector<double> kValues = {0.5, 0.4, 0.8, 3.0, 3.0, 9.0, 0.2, 0.1, 0.6, 1.1};
// Row 0 ends after step 2 (steps 3, 4 are padding with junk rewards and values); row 1 has a
// one-token prompt.
const std::vector<double> kMask = {1, 1, 1, 0, 0, 0, 1, 1, 1, 1};

Tensor mat(const std::vector<double>& v) { return Tensor::from_vector(v, {2, kT}); }

// A_t = sum_{l >= 0} (gamma lambda)^l delta_{t+l} over the row's valid steps, V after the last = 0.
std::vector<double> gae_by_definition(double gamma, double lambda) {
  std::vector<double> out(kRewards.size(), 0.0);
  for (int64_t b = 0; b < 2; ++b) {
    std::vector<size_t> steps;
    for (int64_t t = 0; t < kT; ++t) {
      if (kMask[static_cast<size_t>(b * kT + t)] != 0) steps.push_back(static_cast<size_t>(b * kT + t));
    }
    std::vector<double> delta(steps.size());
    for (size_t k = 0; k < steps.size(); ++k) {
      double next_value = k + 1 < steps.size() ? kValues[steps[k + 1]] : 0.0;
      delta[k] = kRewards[steps[k]] + gamma * next_value - kValues[steps[k]];
    }
    for (size_t k = 0; k < steps.size(); ++k) {
      for (size_t j = k; j < steps.size(); ++j) out[steps[k]] += std::pow(gamma * lambda, j - k) * delta[j];
    }
  }
  return out;
}

TEST(Gae, EqualsTheDiscountedSumOfResidualsAndStopsAtTheMask) {
  const double gamma = 0.9, lambda = 0.8;
  GaeResult result = gae(mat(kRewards), mat(kValues), mat(kMask), gamma, lambda);
  std::vector<double> want = gae_by_definition(gamma, lambda);
  std::vector<double> advantages = result.advantages.to_vector<double>(), returns = result.returns.to_vector<double>();
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(advantages[i], want[i], 1e-14) << i;
    EXPECT_NEAR(returns[i], kMask[i] != 0 ? want[i] + kValues[i] : 0.0, 1e-14) << i;
  }
  // Hand check of row 0's last valid step: delta = 1.0 + 0 - 0.8.
  EXPECT_NEAR(advantages[2], 0.2, 1e-15);
  EXPECT_EQ(advantages[3], 0.0);
  EXPECT_EQ(advantages[5], 0.0);
}

TEST(Gae, LambdaOneGivesMonteCarloReturns) {
  const double gamma = 0.95;
  std::vector<double> returns = gae(mat(kRewards), mat(kValues), mat(kMask), gamma, 1.0).returns.to_vector<double>();
  // Row 1, steps 1..4: R_t = sum_l gamma^l r_{t+l}.
  for (int64_t t = 1; t < kT; ++t) {
    double want = 0;
    for (int64_t u = t; u < kT; ++u) want += std::pow(gamma, u - t) * kRewards[static_cast<size_t>(kT + u)];
    EXPECT_NEAR(returns[static_cast<size_t>(kT + t)], want, 1e-14) << t;
  }
  EXPECT_THROW(gae(mat(kRewards), mat(kValues), mat(kMask), 1.5, 0.9), Error);
  EXPECT_THROW(gae(mat(kRewards), Tensor::zeros({2, 4}, DType::F64), mat(kMask), 0.9, 0.9), Error);
}

TEST(GrpoAdvantages, NormalizeEachGroupBySampleStd) {
  Tensor rewards = Tensor::from_vector(std::vector<float>{1, 0, 1, 1, 0, 0, 0, 1}, {8});
  GrpoOptions options;
  options.group_size = 4;
  std::vector<double> got = grpo_advantages(rewards, options).to_vector<double>();
  // Group 0: mean 0.75, sample std sqrt((3 * 0.25^2 + 0.75^2) / 3) = 0.5; group 1: mean 0.25, std 0.5.
  const double d = 0.5 + 1e-4;
  std::vector<double> want = {0.25 / d, -0.75 / d, 0.25 / d, 0.25 / d, -0.25 / d, -0.25 / d, -0.25 / d, 0.75 / d};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6) << i;  // f32 in and out
  EXPECT_EQ(grpo_advantages(rewards, options).dtype(), DType::F32);

  options.scale_by_std = false;
  std::vector<double> centred = grpo_advantages(rewards, options).to_vector<double>();
  EXPECT_NEAR(centred[1], -0.75, 1e-7);
  EXPECT_NEAR(centred[7], 0.75, 1e-7);

  options = {};
  options.group_size = 2;
  std::vector<double> equal =
      grpo_advantages(Tensor::from_vector(std::vector<double>{3, 3}, {2}), options).to_vector<double>();
  EXPECT_EQ(equal, (std::vector<double>{0, 0}));  // a group that all agrees teaches nothing
  options.group_size = 3;
  EXPECT_THROW(grpo_advantages(rewards, options), Error);
  options.group_size = 1;
  EXPECT_THROW(grpo_advantages(rewards, options), Error);
}

TEST(Whiten, ZeroMeanUnitSampleVarianceOverTheMask) {
  std::vector<double> x = {1.0, 2.0, 4.0, 100.0, 100.0, 100.0, -1.0, 3.0, 0.5, 2.5};
  std::vector<double> got = whiten(mat(x), mat(kMask)).to_vector<double>();
  double mean = (1.0 + 2.0 + 4.0 - 1.0 + 3.0 + 0.5 + 2.5) / 7.0, squares = 0;
  for (size_t i = 0; i < x.size(); ++i) squares += kMask[i] * std::pow(x[i] - mean, 2);
  double scale = 1.0 / std::sqrt(squares / 6.0 + 1e-8);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(got[i], kMask[i] * (x[i] - mean) * scale, 1e-14) << i;
  std::vector<double> kept = whiten(mat(x), mat(kMask), /*shift_mean=*/false).to_vector<double>();
  EXPECT_NEAR(kept[0], (1.0 - mean) * scale + mean, 1e-14);
}

TEST(PpoTokenRewards, KlPenaltyEveryTokenAndScoreOnTheLast) {
  std::vector<double> kl = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0};
  Tensor scores = Tensor::from_vector(std::vector<double>{2.0, -1.0}, {2});
  std::vector<double> got = ppo_token_rewards(scores, mat(kl), mat(kMask), 0.05).to_vector<double>();
  std::vector<double> want = {-0.005, -0.01, -0.015 + 2.0, 0, 0, 0, -0.035, -0.04, -0.045, -0.05 - 1.0};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-15) << i;
  EXPECT_THROW(ppo_token_rewards(scores, mat(kl), Tensor::zeros({2, kT}, DType::F64), 0.05), Error);
}

}  // namespace
}  // namespace tessera
