// Generation: decoding with the KV cache gives the same logits and the same greedy tokens as
// rerunning the whole sequence without it (GPT: learned positions; Llama: rope and grouped-query
// heads), for a batch of prompts of different lengths; the samplers against distributions
// computed here by hand (top-k, top-p, temperature, the inverse-CDF draw); seeded sampling
// reproduces; stop sequences end a row.
#include "models/generation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "support/tiny_models.h"

namespace tessera {
namespace {

// Tiny models whose outputs depend strongly on context (a large init std), so a cache that
// lost a position or a key would change the tokens.
TransformerConfig tiny(bool llama) {
  TransformerConfig c = testing::tiny_transformer(llama);
  c.max_position_embeddings = 32;
  c.init_method_std = 0.5;
  return c;
}

const std::vector<std::vector<int32_t>> kPrompts = {{5, 17, 2}, {30, 1, 1, 8, 22, 9, 14}};

std::vector<std::vector<int32_t>> run(const GptModel& model, GenerationOptions options, uint64_t seed = 1) {
  Generator generator(seed);
  return generate(model, kPrompts, options, generator);
}

GenerationOptions greedy(int64_t new_tokens, bool use_cache) {
  GenerationOptions options;
  options.max_new_tokens = new_tokens;
  options.sampling.temperature = 0.0;
  options.use_cache = use_cache;
  return options;
}

class Generation : public ::testing::TestWithParam<bool> {};  // param: llama

TEST_P(Generation, CachedGreedyTokensEqualUncached) {
  for (DType dtype : {DType::F64, DType::F32}) {
    GptModel model(tiny(GetParam()), 3, ParamOptions{dtype, Device::cpu()});
    model.eval();
    const auto cached = run(model, greedy(20, true));
    const auto uncached = run(model, greedy(20, false));
    ASSERT_EQ(cached.size(), 2u);
    for (size_t b = 0; b < cached.size(); ++b) {
      EXPECT_EQ(cached[b], uncached[b]) << "row " << b << " " << dtype_name(dtype);
      EXPECT_EQ(cached[b].size(), 20u);
      // The test means something only if the model's choices vary with the context.
      EXPECT_GE(std::set<int32_t>(cached[b].begin(), cached[b].end()).size(), 4u) << "row " << b;
    }
    EXPECT_NE(cached[0], cached[1]);
  }
}

// The logits of a sequence fed to the cache in chunks (4 tokens, 1, then 4: a chunk after
// cached tokens is attention with Tq < Tk) against one forward pass over the whole sequence.
TEST_P(Generation, ChunkedCachedLogitsEqualFullForward) {
  GptModel model(tiny(GetParam()), 4, ParamOptions{DType::F64, Device::cpu()});
  model.eval();
  std::vector<int64_t> tokens = {3, 9, 27, 4, 11, 36, 0, 8, 15, 20, 7, 2, 33, 5, 6, 19, 1, 25};
  Tensor sequence = Tensor::from_vector(tokens, {2, 9});
  NoGradGuard no_grad;
  const std::vector<double> full = model.forward(sequence).to_vector<double>();
  KvCache cache = model.new_kv_cache(2, 12);
  std::vector<Tensor> chunks;
  int64_t start = 0;
  for (int64_t length : {4, 1, 4}) {
    chunks.push_back(model.forward(sequence.narrow(1, start, length).contiguous(), cache));
    start += length;
    EXPECT_EQ(cache.length(0), start);
    EXPECT_EQ(cache.length(1), start);
  }
  const std::vector<double> cached = cat(chunks, 1).to_vector<double>();
  ASSERT_EQ(cached.size(), full.size());
  double worst = 0.0;
  for (size_t i = 0; i < full.size(); ++i) worst = std::max(worst, std::fabs(cached[i] - full[i]));
  EXPECT_LT(worst, 1e-12);
}

TEST_P(Generation, TopKOneEqualsGreedy) {
  GptModel model(tiny(GetParam()), 5);
  model.eval();
  GenerationOptions top1;
  top1.max_new_tokens = 12;
  top1.sampling = {1.5, 1, 1.0};
  EXPECT_EQ(run(model, top1, 11), run(model, greedy(12, true)));
}

TEST_P(Generation, SeededSamplingReproduces) {
  GptModel model(tiny(GetParam()), 6);
  model.eval();
  GenerationOptions sample;
  sample.max_new_tokens = 16;
  sample.sampling = {1.0, 20, 0.95};
  const auto first = run(model, sample, 42);
  EXPECT_EQ(run(model, sample, 42), first);
  EXPECT_NE(run(model, sample, 43), first);
  sample.use_cache = false;
  EXPECT_EQ(run(model, sample, 42), first) << "the cache does not change what is drawn";
}

// The greedy tokens of row b up to (excluding) the first place where `stop` ends.
std::vector<int32_t> cut_at_first(const std::vector<int32_t>& tokens, const std::vector<int32_t>& stop) {
  for (size_t end = stop.size(); end <= tokens.size(); ++end) {
    if (std::equal(stop.begin(), stop.end(), tokens.begin() + static_cast<long>(end - stop.size()))) {
      return {tokens.begin(), tokens.begin() + static_cast<long>(end - stop.size())};
    }
  }
  return tokens;
}

TEST_P(Generation, StopSequenceEndsARow) {
  GptModel model(tiny(GetParam()), 7);
  model.eval();
  const auto free_run = run(model, greedy(16, true));
  for (const std::vector<int32_t>& stop :
       {std::vector<int32_t>{free_run[0][5]}, std::vector<int32_t>{free_run[1][3], free_run[1][4]}}) {
    GenerationOptions options = greedy(16, true);
    options.stop_sequences = {stop};
    const auto stopped = run(model, options);
    for (size_t b = 0; b < 2; ++b) EXPECT_EQ(stopped[b], cut_at_first(free_run[b], stop)) << "row " << b;
  }
  // The row that stopped is shorter than its free run; the stop tokens are not returned.
  GenerationOptions options = greedy(16, true);
  options.stop_sequences = {{free_run[0][5]}};
  EXPECT_LE(run(model, options)[0].size(), 5u);
}

INSTANTIATE_TEST_SUITE_P(Families, Generation, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) { return info.param ? "Llama" : "Gpt"; });

std::vector<float> log_probs(const std::vector<double>& p) {
  std::vector<float> logits;
  for (double x : p) logits.push_back(static_cast<float>(std::log(x)));
  return logits;
}

void expect_distribution(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6) << "token " << i;
}

TEST(Sampling, TopPKeepsTheSmallestSetReachingP) {
  const std::vector<float> logits = log_probs({0.05, 0.5, 0.1, 0.2, 0.15});
  // 0.5 + 0.2 = 0.7 < 0.8, + 0.15 = 0.85 >= 0.8: tokens 1, 3, 4.
  expect_distribution(sampling_distribution(logits, {1.0, 0, 0.8}), {0, 0.5 / 0.85, 0, 0.2 / 0.85, 0.15 / 0.85});
  // 0.5 < 0.65, + 0.2 = 0.7 >= 0.65: tokens 1, 3.
  expect_distribution(sampling_distribution(logits, {1.0, 0, 0.65}), {0, 0.5 / 0.7, 0, 0.2 / 0.7, 0});
  // The most likely token alone already reaches 0.3.
  expect_distribution(sampling_distribution(logits, {1.0, 0, 0.3}), {0, 1, 0, 0, 0});
  expect_distribution(sampling_distribution(logits, {1.0, 0, 1.0}), {0.05, 0.5, 0.1, 0.2, 0.15});
}

TEST(Sampling, TemperatureThenTopKThenTopP) {
  const std::vector<double> p = {0.05, 0.5, 0.1, 0.2, 0.15};
  // Temperature 2: q_i proportional to sqrt(p_i); top-k 3 keeps tokens 1, 3, 4; top-p 0.7 then
  // keeps the smallest prefix of them (by q) reaching 0.7 of their renormalised mass.
  double s1 = std::sqrt(0.5), s3 = std::sqrt(0.2), s4 = std::sqrt(0.15), z = s1 + s3 + s4;
  ASSERT_LT(s1 / z, 0.7);
  ASSERT_GE((s1 + s3) / z, 0.7);
  expect_distribution(sampling_distribution(log_probs(p), {2.0, 3, 0.7}), {0, s1 / (s1 + s3), 0, s3 / (s1 + s3), 0});
  // Top-k keeps ties with the k-th logit (as Hugging Face's warper does).
  expect_distribution(sampling_distribution(std::vector<float>{1, 2, 2, 0}, {1.0, 1, 1.0}), {0, 0.5, 0.5, 0});
}

TEST(Sampling, DrawsFollowTheDistribution) {
  const std::vector<float> logits = log_probs({0.2, 0.5, 0.3});
  std::vector<int> counts(3, 0);
  for (int i = 0; i < 1000; ++i) ++counts[static_cast<size_t>(choose_token(logits, {1.0, 0, 1.0}, (i + 0.5) / 1000))];
  EXPECT_EQ(counts, (std::vector<int>{200, 500, 300}));
  // Greedy: the largest logit, the lowest id among ties.
  EXPECT_EQ(choose_token(std::vector<float>{0.1f, 3.0f, 3.0f, -1.0f}, {0.0, 0, 1.0}, 0.99), 1);
}

TEST(Sampling, RejectsBadOptionsAndRequests) {
  const std::vector<float> logits = {0.0f, 1.0f};
  EXPECT_THROW(sampling_distribution(logits, {-1.0, 0, 1.0}), Error);
  EXPECT_THROW(sampling_distribution(logits, {1.0, -2, 1.0}), Error);
  EXPECT_THROW(sampling_distribution(logits, {1.0, 0, 0.0}), Error);
  EXPECT_THROW(sampling_distribution(logits, {1.0, 0, 1.5}), Error);
  EXPECT_THROW(sampling_distribution(std::vector<float>{0.0f, NAN}, {1.0, 0, 1.0}), Error);
  GptModel model(tiny(false), 8);
  Generator generator(1);
  EXPECT_THROW(generate(model, kPrompts, greedy(4, true), generator), Error) << "training mode";
  model.eval();
  EXPECT_THROW(generate(model, {{}}, greedy(4, true), generator), Error) << "empty prompt";
  EXPECT_THROW(generate(model, {{37}}, greedy(4, true), generator), Error) << "token outside the vocabulary";
  EXPECT_THROW(generate(model, {std::vector<int32_t>(30, 1)}, greedy(4, true), generator), Error)
      << "beyond max_position_embeddings";
  EXPECT_NO_THROW(generate(model, {std::vector<int32_t>(29, 1)}, greedy(4, true), generator));
}

}  // namespace
}  // namespace tessera
