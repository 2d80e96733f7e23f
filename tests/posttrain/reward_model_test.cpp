// RewardModel (posttrain/reward_model.h) on tiny GPT and Llama backbones:
//  - GptModel::forward_hidden is what forward() multiplies by the output table: hidden x
//    table^T over the real vocabulary equals forward()'s logits (tied GPT table, untied Llama
//    output layer);
//  - rewards() is score.weight . hidden[b, length_b - 1], computed here by hand from
//    forward_hidden, and a row's reward does not depend on its right padding;
//  - the parameter names are the backbone's plus score.weight; all receive gradient except an
//    untied output layer (kept for LM checkpoints, unused by the reward).
#include "posttrain/reward_model.h"

#include <gtest/gtest.h>

#include "core/ops/ops.h"
#include "support/tiny_models.h"

namespace tessera {
namespace {

class RewardModelTest : public ::testing::TestWithParam<bool> {};

TEST_P(RewardModelTest, HiddenStatesRewardsAndNames) {
  const TransformerConfig config = testing::tiny_transformer(GetParam());
  RewardModel model(config, 5, {DType::F64});
  const int64_t b = 2, t = 6, c = config.hidden_size, v = config.vocab_size;
  std::vector<int64_t> ids = {3, 1, 4, 1, 5, 9, 2, 6, 5, 0, 0, 0};  // row 1: 3 real tokens, then padding
  const Tensor tokens = Tensor::from_vector(ids, {b, t});

  const Tensor hidden = model.backbone().forward_hidden(tokens);
  ASSERT_EQ(hidden.shape(), (Shape{b, t, c}));
  std::string table_name = config.tie_word_embeddings ? "embedding.word_embeddings.weight" : "output_layer.weight";
  Tensor table;
  for (const auto& [name, value] : model.named_parameters())
    if (name == table_name) table = value;
  ASSERT_TRUE(table.defined()) << table_name;
  const std::vector<double> h = hidden.contiguous().to_vector<double>(), w = table.contiguous().to_vector<double>();
  const std::vector<double> logits = model.backbone().forward(tokens).contiguous().to_vector<double>();
  ASSERT_EQ(logits.size(), size_t(b * t * v));
  for (int64_t row = 0; row < b * t; ++row) {
    for (int64_t j = 0; j < v; ++j) {
      double dot = 0.0;
      for (int64_t k = 0; k < c; ++k) dot += h[size_t(row * c + k)] * w[size_t(j * c + k)];
      EXPECT_NEAR(logits[size_t(row * v + j)], dot, 1e-10) << "position " << row << " token " << j;
    }
  }

  const std::vector<int64_t> lengths = {6, 3};
  const std::vector<double> rewards = model.rewards(tokens, lengths).to_vector<double>();
  const std::vector<double> score = model.head().weight().to_vector<double>();
  for (int64_t row = 0; row < b; ++row) {
    double want = 0.0;
    for (int64_t k = 0; k < c; ++k) want += score[size_t(k)] * h[size_t((row * t + lengths[size_t(row)] - 1) * c + k)];
    EXPECT_NEAR(rewards[size_t(row)], want, 1e-12) << "row " << row;
  }
  // Row 1 alone, unpadded: the padding after its last token changes nothing (causal attention).
  const Tensor alone = Tensor::from_vector(std::vector<int64_t>{2, 6, 5}, {1, 3});
  EXPECT_NEAR(model.rewards(alone, {3}).item(), rewards[1], 1e-12);

  const auto named = model.named_parameters();
  EXPECT_EQ(named.back().first, "score.weight");
  EXPECT_EQ(named.size(), model.backbone().named_parameters().size() + 1);
  sum(model.rewards(tokens, lengths)).backward();
  // Everything gets a gradient but an untied output layer, which a reward model does not use.
  for (const auto& [name, value] : named) EXPECT_EQ(value.grad().defined(), name != "output_layer.weight") << name;
}

INSTANTIATE_TEST_SUITE_P(Flavours, RewardModelTest, ::testing::Values(false, true),
                         [](const auto& info) { return std::string(info.param ? "llama" : "gpt"); });

}  // namespace
}  // namespace tessera
