// Rollout rows for GRPO/PPO: the prompt + response layout, labels and response mask written out
// by hand; minibatch slices trimmed to their own rows; the per-token log-probs against a
// log-softmax of the model's logits computed here in double; and grouped sampling against a
// direct generate() call with the same seed (the end token put back where a row stopped).
#include "posttrain/rollout.h"

#include <gtest/gtest.h>

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "support/tiny_models.h"

namespace tessera {
namespace {

TEST(Rollout, RowsLabelsAndMaskByHand) {
  const RolloutBatch b = make_rollout_batch({{1, 2, 3}, {4}}, {{5, 6}, {7, 8, 9}}, /*pad_id=*/0, Device::cpu());
  ASSERT_EQ(b.tokens.shape(), (Shape{2, 5}));
  EXPECT_EQ(b.tokens.to_vector<int64_t>(), (std::vector<int64_t>{1, 2, 3, 5, 6, 4, 7, 8, 9, 0}));
  EXPECT_EQ(b.labels.to_vector<int64_t>(), (std::vector<int64_t>{2, 3, 5, 6, -100, 7, 8, 9, -100, -100}));
  EXPECT_EQ(b.response_mask.to_vector<float>(), (std::vector<float>{0, 0, 1, 1, 0, 1, 1, 1, 0, 0}));
  EXPECT_EQ(b.prompt_lengths, (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(b.response_lengths, (std::vector<int64_t>{2, 3}));

  const RolloutBatch second = slice_rollout_batch(b, 1, 1);  // trimmed to its own 4 tokens
  EXPECT_EQ(second.tokens.to_vector<int64_t>(), (std::vector<int64_t>{4, 7, 8, 9}));
  EXPECT_EQ(second.labels.to_vector<int64_t>(), (std::vector<int64_t>{7, 8, 9, -100}));
  EXPECT_EQ(second.response_mask.to_vector<float>(), (std::vector<float>{1, 1, 1, 0}));
  EXPECT_THROW(slice_rollout_batch(b, 1, 2), Error);
  EXPECT_THROW(make_rollout_batch({{}}, {{1}}, 0, Device::cpu()), Error);
  EXPECT_THROW(make_rollout_batch({{1}}, {{1}, {2}}, 0, Device::cpu()), Error);
}

TEST(Rollout, LogProbsAreTheTemperedLogSoftmaxOfTheResponse) {
  const GptModel model(testing::tiny_transformer(false), 3);
  const RolloutBatch b = make_rollout_batch({{1, 2, 3}, {4}}, {{5, 6}, {7, 8, 9}}, 0, Device::cpu());
  const double temperature = 0.7;
  Tensor entropy;
  const std::vector<float> got = rollout_log_probs(model, b, temperature, &entropy).to_vector<float>();
  const std::vector<float> got_entropy = entropy.to_vector<float>();
  const std::vector<float> logits = model.forward(b.tokens).to_vector<float>();
  const std::vector<int64_t> labels = b.labels.to_vector<int64_t>();
  const std::vector<float> mask = b.response_mask.to_vector<float>();
  const int64_t v = 37;
  for (int64_t i = 0; i < 10; ++i) {
    double max = -1e30, z = 0, expected_entropy = 0;
    for (int64_t k = 0; k < v; ++k) max = std::max(max, logits[i * v + k] / temperature);
    for (int64_t k = 0; k < v; ++k) z += std::exp(logits[i * v + k] / temperature - max);
    for (int64_t k = 0; k < v; ++k) {
      const double logp = logits[i * v + k] / temperature - max - std::log(z);
      expected_entropy -= std::exp(logp) * logp;
    }
    const double expected = mask[i] == 0 ? 0.0 : logits[i * v + labels[i]] / temperature - max - std::log(z);
    EXPECT_NEAR(got[i], expected, 1e-5) << "position " << i;
    EXPECT_NEAR(got_entropy[i], mask[i] == 0 ? 0.0 : expected_entropy, 1e-5) << "position " << i;
  }
}

TEST(Rollout, GroupsAreGenerateOfRepeatedPromptsWithTheEndTokenKept) {
  GptModel model(testing::tiny_transformer(false), 5);
  model.eval();
  GenerationOptions options;
  options.max_new_tokens = 6;
  options.sampling.temperature = 1.5;
  const std::vector<std::vector<int32_t>> prompts = {{1, 2}, {3, 4, 5}};
  NoGradGuard no_grad;
  // The end token: the third token row 0 draws without stops, so that at least that row stops
  // (one draw per step and row: the same seed draws the same tokens until a row stops).
  Generator probe(11);
  const int32_t end = generate(model, {{1, 2}}, options, probe)[0][2];
  options.stop_sequences = {{end}};
  Generator a(11), b(11);
  const auto groups = sample_groups(model, prompts, 4, options, end, a);
  const auto direct =
      generate(model, {{1, 2}, {1, 2}, {1, 2}, {1, 2}, {3, 4, 5}, {3, 4, 5}, {3, 4, 5}, {3, 4, 5}}, options, b);
  ASSERT_EQ(groups.size(), 8u);
  int stopped = 0;
  for (size_t i = 0; i < groups.size(); ++i) {
    std::vector<int32_t> expected = direct[i];
    if (expected.size() < 6) {
      expected.push_back(end);
      ++stopped;
    }
    EXPECT_EQ(groups[i], expected) << "row " << i;
  }
  EXPECT_GT(stopped, 0) << "no row stopped: the end-token path is not exercised";
  EXPECT_LT(stopped, 8) << "every row stopped: the max_new_tokens path is not exercised";
  options.stop_sequences = {{end}, {1, 2}};
  EXPECT_THROW(sample_groups(model, prompts, 4, options, end, a), Error);
}

}  // namespace
}  // namespace tessera
