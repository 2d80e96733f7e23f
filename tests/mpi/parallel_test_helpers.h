// Helpers shared by the model-parallel tests in tests/mpi: a relative error for comparing a
// parallel run against the single-rank one, seeded random tensors, the check that an error is
// one line naming its reason, the tokens a batch's mean loss divides by, and Megatron's
// tensor-parallel split of each GptModel parameter with the gather that undoes it.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/ops/ops.h"
#include "core/ops/random_ops.h"
#include "models/gpt_model.h"
#include "parallel/communicator.h"

namespace tessera::testing {

// max |got - expected| / max |expected| (shapes must match).
inline double relative_error(const Tensor& got, const Tensor& expected) {
  EXPECT_EQ(got.shape(), expected.shape());
  std::vector<double> a = got.to_vector<double>(), b = expected.to_vector<double>();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

// Uniform in [-1, 1), f32, from `generator`.
inline Tensor random_tensor(const Shape& shape, Generator& generator) {
  Tensor t = Tensor::empty(shape);
  return uniform_(t, generator, -1.0, 1.0);
}

template <typename Build>
void expect_rejected(Build build, const std::string& reason) {
  try {
    build();
    ADD_FAILURE() << "expected an error containing '" << reason << "'";
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find(reason), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
  }
}

// Small models for the model-parallel tests, `layers` deep: hidden 32, FFN 64, vocabulary 100
// (padded per tp size), 16 positions. GPT flavour: LayerNorm, GELU, learned positions, biases,
// tied embeddings, 4 heads, vocabulary padded to a multiple of 8 x tp (the last tp shard ends in
// padding). Llama flavour: RMSNorm, SwiGLU, rope, 8 query heads in 4 key/value groups, no
// biases, untied, vocabulary padded to 128 x tp (whole tp shards are padding).
inline TransformerConfig tiny_gpt_config(std::string name, int64_t layers) {
  TransformerConfig c = transformer_preset("gpt2-124m");
  c.name = std::move(name);
  c.num_layers = layers;
  c.hidden_size = 32;
  c.num_attention_heads = 4;
  c.num_query_groups = 4;
  c.ffn_hidden_size = 64;
  c.vocab_size = 100;
  c.make_vocab_size_divisible_by = 8;
  c.max_position_embeddings = 16;
  return c;
}

inline TransformerConfig tiny_llama_config(std::string name, int64_t layers) {
  TransformerConfig c = transformer_preset("llama-tiny");
  c.name = std::move(name);
  c.num_layers = layers;
  c.hidden_size = 32;
  c.num_attention_heads = 8;
  c.num_query_groups = 4;
  c.ffn_hidden_size = 64;
  c.vocab_size = 100;
  c.max_position_embeddings = 16;
  return c;
}

// The tokens that count in the whole batch (what a Mean loss divides by).
inline double counted_tokens(const LmBatch& batch) {
  std::vector<int64_t> labels = batch.labels.to_vector<int64_t>();
  std::vector<float> mask = batch.loss_mask.to_vector<float>();
  double count = 0;
  for (size_t i = 0; i < labels.size(); ++i) count += labels[i] == -100 ? 0.0 : mask[i];
  return count;
}

// How Megatron splits a parameter over tp: along `dim`, in `blocks` separately split blocks
// (SwiGLU's fc1: gate and up); vocabulary tables are padded per tp size.
struct Split {
  bool sharded = false;
  int64_t dim = 0;
  int64_t blocks = 1;
  bool vocabulary = false;
};

inline bool ends_with(const std::string& name, const std::string& suffix) {
  return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

inline Split split_of(const std::string& name, const TransformerConfig& config) {
  if (ends_with(name, "word_embeddings.weight") || ends_with(name, "output_layer.weight"))
    return {.sharded = true, .vocabulary = true};
  if (ends_with(name, "linear_qkv.weight") || ends_with(name, "linear_qkv.bias")) return {.sharded = true};
  if (ends_with(name, "linear_fc1.weight") || ends_with(name, "linear_fc1.bias"))
    return {.sharded = true, .blocks = config.activation == Activation::SwiGLU ? 2 : 1};
  if (ends_with(name, "linear_proj.weight") || ends_with(name, "linear_fc2.weight")) return {.sharded = true, .dim = 1};
  return {};
}

// The full tensor from every tp rank's shard (collective over tp).
inline Tensor gather_shards(const Tensor& shard, Communicator& tp, const Split& split) {
  Tensor all = Tensor::empty({tp.size(), shard.numel()});
  tp.all_gather(shard.contiguous().reshape({1, shard.numel()}), all);
  std::vector<Tensor> pieces;
  for (int64_t block = 0; block < split.blocks; ++block) {
    for (int q = 0; q < tp.size(); ++q)
      pieces.push_back(chunk(all.narrow(0, q, 1).view(shard.shape()), split.blocks, split.dim)[block]);
  }
  return cat(pieces, split.dim);
}

}  // namespace tessera::testing
