// GPT/Llama models: parameter counts against the published sizes, stable names, causality,
// the whole model's gradient against finite differences in f64, recomputation bit-equality,
// padded vocabulary rows (and their padding per tp size), the single-rank answers of the
// tensor-parallel hooks, and a small model memorising a sequence.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "models/gpt_model.h"
#include "optim/adamw.h"
#include "support/tiny_models.h"

namespace tessera {
namespace {

TransformerConfig tiny(bool llama) { return testing::tiny_transformer(llama); }

LmBatch batch_of(const std::vector<int64_t>& sequence, int64_t b, int64_t t) {
  std::vector<int64_t> tokens, labels;
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < t; ++j) {
      tokens.push_back(sequence[static_cast<size_t>((i * 3 + j) % int64_t(sequence.size()))]);
      labels.push_back(sequence[static_cast<size_t>((i * 3 + j + 1) % int64_t(sequence.size()))]);
    }
  return {Tensor::from_vector(tokens, {b, t}), Tensor::from_vector(labels, {b, t}), Tensor()};
}

TEST(GptModel, ParameterCountsMatchThePublishedModels) {
  // Hugging Face's counts: GPT2LMHeadModel 124,439,808 (vocab 50257, tied); Llama-3.2-1B
  // 1,235,814,400 (tied); Llama-3.1-8B 8,030,261,248; Llama-3.1-70B 70,553,706,496.
  TransformerConfig gpt2 = transformer_preset("gpt2-124m");
  gpt2.make_vocab_size_divisible_by = 1;
  EXPECT_EQ(gpt2.parameter_count(), 124439808);
  EXPECT_EQ(transformer_preset("llama3-1b").parameter_count(), 1235814400);
  EXPECT_EQ(transformer_preset("llama3-8b").parameter_count(), 8030261248);
  EXPECT_EQ(transformer_preset("llama3-70b").parameter_count(), 70553706496);
  EXPECT_EQ(transformer_preset("gpt2-124m").padded_vocab_size(), 50304);
  // Megatron pads to a multiple of 128 x tp: GPT-2's 50257 becomes 50432 at tp = 2, 51200 at 8.
  EXPECT_EQ(transformer_preset("gpt2-124m").padded_vocab_size(2), 50432);
  EXPECT_EQ(transformer_preset("gpt2-124m").padded_vocab_size(8), 51200);
}

TEST(GptModel, BuiltModelsHaveTheCountedParameters) {
  for (bool llama : {false, true}) {
    GptModel model(tiny(llama), 1);
    int64_t total = 0;
    for (const Tensor& p : model.parameters()) total += p.numel();
    EXPECT_EQ(total, tiny(llama).parameter_count()) << (llama ? "llama" : "gpt");
  }
}

TEST(GptModel, ParameterNamesAreStable) {
  std::vector<std::string> gpt, llama;
  for (auto& [name, t] : GptModel(tiny(false), 1).named_parameters()) gpt.push_back(name);
  for (auto& [name, t] : GptModel(tiny(true), 1).named_parameters()) llama.push_back(name);
  std::vector<std::string> gpt_layer0 = {
      "decoder.layers.0.input_layernorm.weight",        "decoder.layers.0.input_layernorm.bias",
      "decoder.layers.0.self_attention.linear_qkv.weight", "decoder.layers.0.self_attention.linear_qkv.bias",
      "decoder.layers.0.self_attention.linear_proj.weight", "decoder.layers.0.self_attention.linear_proj.bias",
      "decoder.layers.0.pre_mlp_layernorm.weight",      "decoder.layers.0.pre_mlp_layernorm.bias",
      "decoder.layers.0.mlp.linear_fc1.weight",         "decoder.layers.0.mlp.linear_fc1.bias",
      "decoder.layers.0.mlp.linear_fc2.weight",         "decoder.layers.0.mlp.linear_fc2.bias"};
  ASSERT_GE(gpt.size(), 14u);
  EXPECT_EQ(gpt[0], "embedding.word_embeddings.weight");
  EXPECT_EQ(gpt[1], "embedding.position_embeddings.weight");
  EXPECT_EQ(std::vector<std::string>(gpt.begin() + 2, gpt.begin() + 14), gpt_layer0);
  EXPECT_THAT(gpt, ::testing::ElementsAreArray(std::vector<std::string>(gpt.begin(), gpt.end())));
  EXPECT_EQ(gpt.back(), "decoder.final_layernorm.bias");
  EXPECT_THAT(llama, ::testing::Contains("output_layer.weight"));
  EXPECT_THAT(llama, ::testing::Not(::testing::Contains("embedding.position_embeddings.weight")));
  EXPECT_THAT(llama, ::testing::Not(::testing::Contains("decoder.layers.1.mlp.linear_fc1.bias")));
}

TEST(GptModel, LogitsAreCausal) {
  for (bool llama : {false, true}) {
    GptModel model(tiny(llama), 3);
    NoGradGuard no_grad;
    Tensor a = Tensor::from_vector(std::vector<int64_t>{1, 5, 9, 2, 7, 3}, {1, 6});
    Tensor b = Tensor::from_vector(std::vector<int64_t>{1, 5, 9, 30, 0, 11}, {1, 6});
    std::vector<float> la = model.forward(a).narrow(1, 0, 3).to_vector<float>();
    std::vector<float> lb = model.forward(b).narrow(1, 0, 3).to_vector<float>();
    EXPECT_EQ(la, lb) << "positions 0..2 must not see tokens 3..5";
    EXPECT_NE(model.forward(a).narrow(1, 3, 1).to_vector<float>(), model.forward(b).narrow(1, 3, 1).to_vector<float>());
  }
}

TEST(GptModel, WholeModelGradientMatchesFiniteDifferencesInF64) {
  for (bool llama : {false, true}) {
    GptModel model(tiny(llama), 5, ParamOptions{DType::F64, Device::cpu()});
    LmBatch batch = batch_of({3, 17, 4, 25, 8, 36, 1, 12, 30}, 2, 5);
    model.loss(batch).backward();
    Generator pick(9);
    double worst = 0.0;
    for (auto& [name, p] : model.named_parameters()) {
      std::vector<double> analytic = p.grad().to_vector<double>();
      double* x = p.data<double>();
      for (int trial = 0; trial < 3; ++trial) {
        int64_t i = int64_t(rand({1}, pick).item() * double(p.numel())) % p.numel();
        double saved = x[i], eps = 1e-6;
        NoGradGuard no_grad;
        x[i] = saved + eps;
        double plus = model.loss(batch).item();
        x[i] = saved - eps;
        double minus = model.loss(batch).item();
        x[i] = saved;
        double numeric = (plus - minus) / (2 * eps);
        // Central differences on a loss of ~3.6 carry ~1e-10 of rounding noise: compare with
        // an absolute floor well above it and a relative bound.
        double diff = std::abs(numeric - analytic[size_t(i)]);
        worst = std::max(worst, diff / std::max(std::abs(numeric), 1e-3));
        EXPECT_LT(diff, 1e-8 + 1e-6 * std::abs(numeric))
            << name << "[" << i << "] analytic " << analytic[size_t(i)] << " numeric " << numeric;
      }
    }
    std::printf("%s model gradcheck: max error %.2e (relative, floor 1e-3)\n", llama ? "llama" : "gpt", worst);
  }
}

TEST(GptModel, RecomputationGivesBitwiseEqualGradientsWithDropout) {
  for (bool llama : {false, true}) {
    TransformerConfig c = tiny(llama);
    c.hidden_dropout = 0.2;
    GptModel plain(c, 7), recomputed(c, 7);
    recomputed.set_recompute(true);
    LmBatch batch = batch_of({3, 17, 4, 25, 8, 36, 1}, 2, 6);
    Tensor loss_plain = plain.loss(batch), loss_recomputed = recomputed.loss(batch);
    EXPECT_EQ(loss_plain.item(), loss_recomputed.item());
    loss_plain.backward();
    loss_recomputed.backward();
    auto a = plain.named_parameters(), b = recomputed.named_parameters();
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].second.grad().to_vector<float>(), b[i].second.grad().to_vector<float>()) << a[i].first;
    }
  }
}

TEST(GptModel, PaddedVocabularyRowsGetNoGradient) {
  GptModel model(tiny(false), 2);
  model.loss(batch_of({1, 2, 3, 4}, 2, 4)).backward();
  const Tensor& grad = model.named_parameters()[0].second.grad();  // word embeddings [40, 16]
  ASSERT_EQ(grad.size(0), 40);
  std::vector<float> padded = grad.narrow(0, 37, 3).to_vector<float>();
  EXPECT_THAT(padded, ::testing::Each(0.0f));
}

TEST(GptModel, WithoutTensorParallelismNothingIsShardedAndFinalizingChangesNothing) {
  GptModel model(tiny(true), 4);
  std::vector<bool> sharded = model.parameter_is_tensor_parallel_sharded();
  EXPECT_EQ(sharded.size(), model.parameters().size());
  EXPECT_THAT(sharded, ::testing::Each(false));
  model.loss(batch_of({1, 2, 3, 4}, 2, 4)).backward();
  std::vector<std::vector<float>> before;
  for (const Tensor& p : model.parameters()) before.push_back(p.grad().to_vector<float>());
  model.finalize_tensor_parallel_grads();
  std::vector<Tensor> parameters = model.parameters();
  for (size_t i = 0; i < parameters.size(); ++i) EXPECT_EQ(parameters[i].grad().to_vector<float>(), before[i]);
}

TEST(GptModel, SmallModelMemorisesASequence) {
  for (bool llama : {false, true}) {
    GptModel model(tiny(llama), 11);
    AdamWOptions o;
    o.lr = 1e-2;
    AdamW opt(model.parameters(), o);
    LmBatch batch = batch_of({5, 9, 14, 2, 33, 21, 7, 18, 26, 11}, 4, 8);
    double first = 0.0, last = 0.0;
    for (int step = 0; step < 60; ++step) {
      model.zero_grad();
      Tensor loss = model.loss(batch);
      loss.backward();
      opt.step();
      (step == 0 ? first : last) = loss.item();
    }
    EXPECT_GT(first, 3.0);  // about ln(37) at init
    EXPECT_LT(last, 0.3) << (llama ? "llama" : "gpt") << " did not memorise";
  }
}

}  // namespace
}  // namespace tessera
