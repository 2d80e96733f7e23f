// Token log-probabilities, entropies, masked sums and the SFT loss against log-softmax written
// out in double on small inputs, and their gradients against finite differences.
#include "posttrain/log_probs.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/ops/ops.h"
#include "posttrain/losses.h"
#include "support/gradcheck.h"

namespace tessera {
namespace {

constexpr int64_t kB = 2, kT = 3, kV = 5;

// log softmax(row)[v] = row[v] - log sum_u exp(row[u]), in double.
double log_softmax(const std::vector<double>& logits, int64_t row, int64_t v) {
  double total = 0;
  for (int64_t u = 0; u < kV; ++u) total += std::exp(logits[static_cast<size_t>(row * kV + u)]);
  return logits[static_cast<size_t>(row * kV + v)] - std::log(total);
}

Tensor random_logits(uint64_t seed, bool requires_grad = false) {
  Generator generator(seed);
  Tensor x = scale(randn({kB, kT, kV}, generator, DType::F64), 3.0);
  return requires_grad ? x.set_requires_grad(true) : x;
}

const std::vector<int64_t> kLabels = {4, 0, -100, 2, 2, 1};

TEST(TokenLogProbs, EqualLogSoftmaxOfTheLabelAndZeroWhereIgnored) {
  Tensor logits = random_logits(1);
  std::vector<double> x = logits.to_vector<double>();
  std::vector<double> got = token_log_probs(logits, Tensor::from_vector(kLabels, {kB, kT})).to_vector<double>();
  ASSERT_EQ(got.size(), kLabels.size());
  for (size_t i = 0; i < kLabels.size(); ++i) {
    double want = kLabels[i] < 0 ? 0.0 : log_softmax(x, static_cast<int64_t>(i), kLabels[i]);
    EXPECT_NEAR(got[i], want, 1e-12) << "position " << i;
  }
}

TEST(TokenEntropy, EqualsMinusSumPLogP) {
  Tensor logits = random_logits(2);
  std::vector<double> x = logits.to_vector<double>();
  std::vector<double> got = token_entropy(logits).to_vector<double>();
  ASSERT_EQ(got.size(), static_cast<size_t>(kB * kT));
  for (int64_t row = 0; row < kB * kT; ++row) {
    double want = 0;
    for (int64_t v = 0; v < kV; ++v) {
      double log_p = log_softmax(x, row, v);
      want -= std::exp(log_p) * log_p;
    }
    EXPECT_NEAR(got[static_cast<size_t>(row)], want, 1e-12) << "row " << row;
  }
  // Uniform logits: entropy log V.
  EXPECT_NEAR(token_entropy(Tensor::zeros({1, kV}, DType::F64)).item(), std::log(static_cast<double>(kV)), 1e-12);
}

TEST(MaskedReductions, SumPerRowAndMeanOverSelectedElements) {
  Tensor values = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor mask = Tensor::from_vector(std::vector<float>{0, 1, 1, 1, 0, 0}, {2, 3});
  EXPECT_EQ(masked_sequence_sum(values, mask).to_vector<double>(), (std::vector<double>{5, 4}));
  EXPECT_DOUBLE_EQ(masked_mean(values, mask).item(), 3.0);  // (2 + 3 + 4) / 3
  EXPECT_THROW(masked_mean(values, Tensor::zeros({2, 3})), Error);
  EXPECT_THROW(masked_mean(values, Tensor::ones({3, 2})), Error);
}

TEST(SftLoss, AveragesMinusLogPOverResponseTokensOnly) {
  Tensor logits = random_logits(3);
  std::vector<double> x = logits.to_vector<double>();
  std::vector<int64_t> labels = {4, 0, 3, 2, 2, 1};
  std::vector<float> response = {0, 1, 1, 0, 0, 1};  // prompt tokens are 0
  Tensor logprobs = token_log_probs(logits, Tensor::from_vector(labels, {kB, kT}));
  double want = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (response[i] != 0) want -= log_softmax(x, static_cast<int64_t>(i), labels[i]) / 3.0;
  }
  EXPECT_NEAR(sft_loss(logprobs, Tensor::from_vector(response, {kB, kT})).item(), want, 1e-12);
}

TEST(LogProbGradients, MatchFiniteDifferences) {
  Tensor labels = Tensor::from_vector(kLabels, {kB, kT});
  Tensor mask = Tensor::from_vector(std::vector<double>{1, 1, 0, 0, 1, 1}, {kB, kT});
  testing::GradcheckResult log_probs = testing::gradcheck(
      [&](const std::vector<Tensor>& x) { return masked_sequence_sum(token_log_probs(x[0], labels), mask); },
      {random_logits(4, true)});
  EXPECT_LT(log_probs.max_relative_error, 1e-6);
  EXPECT_GT(log_probs.max_abs_gradient, 0.0);
  testing::GradcheckResult entropy =
      testing::gradcheck([](const std::vector<Tensor>& x) { return token_entropy(x[0]); }, {random_logits(5, true)});
  EXPECT_LT(entropy.max_relative_error, 1e-6);
  EXPECT_GT(entropy.max_abs_gradient, 0.0);
}

}  // namespace
}  // namespace tessera
