// Bradley-Terry and DPO/IPO against their formulas written out in double (std::log, std::exp)
// on a few pairs, their gradients against the closed form and finite differences, bad inputs.
#include <gtest/gtest.h>

#include <cmath>

#include "core/ops/ops.h"
#include "posttrain/losses.h"
#include "support/gradcheck.h"

namespace tessera {
namespace {

double log_sigmoid(double x) { return -std::log1p(std::exp(-x)); }
double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

Tensor vec(const std::vector<double>& v) { return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}); }

TEST(BradleyTerry, LossAccuracyAndGradientEqualTheClosedForm) {
  const std::vector<double> chosen = {1.5, -0.3, 0.2, 2.0}, rejected = {0.5, 0.4, 0.2, -1.0};
  Tensor c = vec(chosen).set_requires_grad(true), r = vec(rejected).set_requires_grad(true);
  BradleyTerryResult result = bradley_terry_loss(c, r);
  double want = 0;
  for (size_t i = 0; i < chosen.size(); ++i) want -= log_sigmoid(chosen[i] - rejected[i]) / 4.0;
  EXPECT_NEAR(result.loss.item(), want, 1e-14);
  EXPECT_DOUBLE_EQ(result.accuracy.item(), 0.5);  // pairs 0 and 3; the tie (pair 2) is wrong
  result.loss.backward();
  std::vector<double> dc = c.grad().to_vector<double>(), dr = r.grad().to_vector<double>();
  for (size_t i = 0; i < chosen.size(); ++i) {
    double d = -(1.0 - sigmoid(chosen[i] - rejected[i])) / 4.0;  // d/dc of -log sigmoid(c - r), mean over 4
    EXPECT_NEAR(dc[i], d, 1e-14) << i;
    EXPECT_NEAR(dr[i], -d, 1e-14) << i;
  }
}

TEST(BradleyTerry, StaysFiniteForLargeMargins) {
  BradleyTerryResult result = bradley_terry_loss(vec({-400.0}), vec({400.0}));
  EXPECT_NEAR(result.loss.item(), 800.0, 1e-9);
  EXPECT_NEAR(bradley_terry_loss(vec({400.0}), vec({-400.0})).loss.item(), 0.0, 1e-300);
}

struct Pairs {
  std::vector<double> pc, pr, rc, rr;  // policy chosen/rejected, reference chosen/rejected
};
const Pairs kPairs = {{-12.0, -20.5, -7.25}, {-14.0, -19.0, -9.0}, {-12.5, -21.0, -7.0}, {-13.0, -20.0, -8.5}};

DpoResult run_dpo(const DpoOptions& options, Tensor* policy_chosen = nullptr) {
  Tensor pc = vec(kPairs.pc).set_requires_grad(true);
  if (policy_chosen != nullptr) *policy_chosen = pc;
  return dpo_loss(pc, vec(kPairs.pr), vec(kPairs.rc), vec(kPairs.rr), options);
}

double logratio_difference(size_t i) { return (kPairs.pc[i] - kPairs.rc[i]) - (kPairs.pr[i] - kPairs.rr[i]); }

TEST(Dpo, SigmoidLossRewardsAndMarginsEqualTheFormula) {
  DpoOptions options;
  options.beta = 0.3;
  Tensor pc;
  DpoResult result = run_dpo(options, &pc);
  double want = 0;
  for (size_t i = 0; i < 3; ++i) want -= log_sigmoid(0.3 * logratio_difference(i)) / 3.0;
  EXPECT_NEAR(result.loss.item(), want, 1e-14);
  std::vector<double> chosen = result.chosen_rewards.to_vector<double>();
  std::vector<double> rejected = result.rejected_rewards.to_vector<double>();
  std::vector<double> margins = result.margins.to_vector<double>();
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_NEAR(chosen[i], 0.3 * (kPairs.pc[i] - kPairs.rc[i]), 1e-14);
    EXPECT_NEAR(rejected[i], 0.3 * (kPairs.pr[i] - kPairs.rr[i]), 1e-14);
    EXPECT_NEAR(margins[i], 0.3 * logratio_difference(i), 1e-14);
  }
  EXPECT_NEAR(result.accuracy.item(), 2.0 / 3.0, 1e-15);  // h = 0.5, -1.5, 1.5
  EXPECT_FALSE(result.chosen_rewards.requires_grad());
  result.loss.backward();
  std::vector<double> grad = pc.grad().to_vector<double>();
  for (size_t i = 0; i < 3; ++i) {
    double d = -0.3 * (1.0 - sigmoid(0.3 * logratio_difference(i))) / 3.0;
    EXPECT_NEAR(grad[i], d, 1e-14) << i;
  }
}

TEST(Dpo, ConservativeLabelSmoothingMixesBothDirections) {
  DpoOptions options;
  options.beta = 0.2;
  options.label_smoothing = 0.1;
  double want = 0;
  for (size_t i = 0; i < 3; ++i) {
    double z = 0.2 * logratio_difference(i);
    want += (-0.9 * log_sigmoid(z) - 0.1 * log_sigmoid(-z)) / 3.0;
  }
  EXPECT_NEAR(run_dpo(options).loss.item(), want, 1e-14);
}

TEST(Dpo, IpoIsTheSquaredDistanceToOneOverTwoBeta) {
  DpoOptions options;
  options.beta = 0.5;
  options.ipo = true;
  double want = 0;
  for (size_t i = 0; i < 3; ++i) want += std::pow(logratio_difference(i) - 1.0, 2) / 3.0;  // 1 / (2 * 0.5) = 1
  Tensor pc;
  DpoResult result = run_dpo(options, &pc);
  EXPECT_NEAR(result.loss.item(), want, 1e-13);
  result.loss.backward();
  std::vector<double> grad = pc.grad().to_vector<double>();
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(grad[i], 2.0 * (logratio_difference(i) - 1.0) / 3.0, 1e-13) << i;
}

TEST(Dpo, PolicyEqualToReferenceGivesLog2AndHalfGradient) {
  // The first DPO step: every logit is exactly 0, where a sign-based softplus would lose the gradient.
  Tensor pc = vec({-3.0, -4.0}).set_requires_grad(true);
  DpoOptions options;
  options.beta = 0.1;
  DpoResult result = dpo_loss(pc, vec({-5.0, -6.0}), vec({-3.0, -4.0}), vec({-5.0, -6.0}), options);
  EXPECT_NEAR(result.loss.item(), std::log(2.0), 1e-15);
  result.loss.backward();
  for (double g : pc.grad().to_vector<double>()) EXPECT_NEAR(g, -0.1 * 0.5 / 2.0, 1e-15);
}

TEST(Dpo, GradientsMatchFiniteDifferences) {
  for (bool ipo : {false, true}) {
    DpoOptions options;
    options.beta = 0.25;
    options.ipo = ipo;
    options.label_smoothing = ipo ? 0.0 : 0.05;
    testing::GradcheckResult result = testing::gradcheck(
        [&](const std::vector<Tensor>& x) {
          return dpo_loss(x[0], x[1], vec(kPairs.rc), vec(kPairs.rr), options).loss;
        },
        {vec(kPairs.pc).set_requires_grad(true), vec(kPairs.pr).set_requires_grad(true)});
    EXPECT_LT(result.max_relative_error, 1e-7) << (ipo ? "ipo" : "dpo");
    EXPECT_GT(result.max_abs_gradient, 0.0);
  }
  testing::GradcheckResult bt = testing::gradcheck(
      [](const std::vector<Tensor>& x) { return bradley_terry_loss(x[0], x[1]).loss; },
      {vec({0.3, -1.2, 2.0}).set_requires_grad(true), vec({0.1, 0.5, -0.7}).set_requires_grad(true)});
  EXPECT_LT(bt.max_relative_error, 1e-7);
}

TEST(Dpo, RefusesBadOptionsAndShapes) {
  DpoOptions options;
  options.beta = 0.0;
  EXPECT_THROW(run_dpo(options), Error);
  options.beta = 0.1;
  options.label_smoothing = 0.5;
  EXPECT_THROW(run_dpo(options), Error);
  options.label_smoothing = 0.1;
  options.ipo = true;
  EXPECT_THROW(run_dpo(options), Error);
  EXPECT_THROW(dpo_loss(vec({1, 2}), vec({1, 2, 3}), vec({1, 2}), vec({1, 2, 3})), Error);
  EXPECT_THROW(bradley_terry_loss(vec({1, 2}), vec({1})), Error);
}

}  // namespace
}  // namespace tessera
