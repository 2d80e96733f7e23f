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
// Inference can keep a KV cache (models/kv_cache.h): forward(tokens, cache) runs only the new
// tokens, at the positions that follow each row's cached ones.
#pragma once

#include <map>
#include <mutex>

#include "core/nn/layers.h"
#include "core/random.h"
#include "models/kv_cache.h"
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
  // Decoding (eval mode; records no gradients): tokens [B, T] are the next T tokens of each
  // row of `cache`, row b's at positions cache.length(b) .. + T - 1. Returns their logits
  // [B, T, V] and advances the cache by T. On a GPU, T > 1 needs empty cache rows (cuDNN's
  // path refuses causal attention with 1 < Tq < Tk, core/cuda/cudnn_attention.cpp).
  Tensor forward(const Tensor& tokens, KvCache& cache) const;
  // An empty cache for `batch` rows of up to `capacity` tokens, in the model's dtype and device.
  KvCache new_kv_cache(int64_t batch, int64_t capacity) const;
  // Cross-entropy over the tokens that count (loss mask, ignore_index = -100): their mean, or
  // their sum (trainers divide by the token count of the whole global batch).
  Tensor loss(const LmBatch& batch, LossReduction reduction = LossReduction::Mean) const;
  // Recompute each layer's activations in backward instead of keeping them (Megatron's
  // "full" recompute granularity with the uniform method, one layer per chunk).
  void set_recompute(bool recompute) { recompute_ = recompute; }
  // Reseeds the dropout stream (the trainer saves and restores it with checkpoints).
  Generator& dropout_generator() const { return dropout_generator_; }

 private:
  // Token embeddings plus, for learned positions, those of `positions` ([T] or [B, T]).
  Tensor embed(const Tensor& tokens, const Tensor& positions) const;
  Tensor hidden_states(const Tensor& tokens) const;
  Tensor final_norm(const ResidualStream& stream) const;
  Tensor logits(const Tensor& hidden) const;
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
