// Decoder-only language model for both families (Megatron calls this GPTModel whatever the
// flavour). Parameter names (stable; checkpoints and exports use them):
//   embedding.word_embeddings.weight            [Vp, C]  (Vp: vocab padded to a multiple of
//                                                         make_vocab_size_divisible_by)
//   embedding.position_embeddings.weight        [max_position_embeddings, C]  (learned only)
//   decoder.layers.N.input_layernorm.{weight,bias}
//   decoder.layers.N.self_attention.linear_qkv.{weight,bias}
//   decoder.layers.N.self_attention.linear_proj.{weight,bias}
//   decoder.layers.N.pre_mlp_layernorm.{weight,bias}
//   decoder.layers.N.mlp.linear_fc1.{weight,bias}
//   decoder.layers.N.mlp.linear_fc2.{weight,bias}
//   decoder.final_layernorm.{weight,bias}
//   output_layer.weight                          [Vp, C]  (untied only)
// (biases only with add_bias_linear / LayerNorm). Logits cover the real vocabulary only: the
// padded rows of the tables never receive probability mass or gradient.
#pragma once

#include <map>
#include <mutex>

#include "core/nn/layers.h"
#include "core/random.h"
#include "models/transformer_layer.h"

namespace tessera {

struct LmBatch {
  Tensor tokens;     // [B, T] i64
  Tensor labels;     // [B, T] i64 (tokens shifted by one); ignore_index where nothing to predict
  Tensor loss_mask;  // [B, T] f32, or undefined (all ones)
};

class GptModel : public Module {
 public:
  // Parameters drawn from `seed` (same seed, same weights, on any device).
  GptModel(const TransformerConfig& config, uint64_t seed, ParamOptions options = {});

  const TransformerConfig& config() const { return config_; }
  // tokens [B, T] (i32/i64) -> logits [B, T, V].
  Tensor forward(const Tensor& tokens) const;
  // Cross-entropy over the tokens that count (loss mask, ignore_index = -100): their mean, or
  // their sum (trainers divide by the token count of the whole global batch).
  Tensor loss(const LmBatch& batch, LossReduction reduction = LossReduction::Mean) const;
  // Recompute each layer's activations in backward instead of keeping them (Megatron's
  // "full" recompute granularity with the uniform method, one layer per chunk).
  void set_recompute(bool recompute) { recompute_ = recompute; }
  // Reseeds the dropout stream (the trainer saves and restores it with checkpoints).
  Generator& dropout_generator() const { return dropout_generator_; }

 private:
  Tensor hidden_states(const Tensor& tokens) const;
  const RopeTables* cached_rope_tables(int64_t seq_len, Device device) const;

  TransformerConfig config_;
  std::shared_ptr<Embedding> word_embeddings_;
  std::shared_ptr<Embedding> position_embeddings_;
  std::shared_ptr<ModuleList> layers_;
  std::shared_ptr<Norm> final_norm_;
  std::shared_ptr<Linear> output_layer_;
  bool recompute_ = false;
  mutable Generator dropout_generator_;
  mutable std::mutex rope_mutex_;
  mutable std::map<std::pair<int64_t, std::string>, RopeTables> rope_cache_;
};

}  // namespace tessera
