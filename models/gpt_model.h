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
//
// Tensor parallelism (ModelParallelism, models/model_parallelism.h; Megatron's layout): the
// names stay, the split parameters hold this rank's shard: word embeddings and output layer
// [Vp/tp, C] with Vp padded to make_vocab_size_divisible_by x tp (vocab-parallel, rank r the
// rows [r Vp/tp, ...)), attention and MLP as in SelfAttention and FeedForward; norms, position
// embeddings and row-parallel biases are replicated. Every rank draws the full parameters from
// the seed and keeps its part, so it starts from the single-rank model's weights. loss() never
// gathers the logits (vocab_parallel_cross_entropy) and returns the same value on every tp
// rank; forward() gathers them (inference). Dropout draws from rng_tracker(): the default
// stream, identical on every tp rank and equal to the single-rank model's, where the
// activations are replicated; the model-parallel stream (different per rank) on the
// sequence-sharded activations of sequence parallelism. A tp group of one rank gives the
// single-rank model (sequence parallelism off, as Megatron does at tp = 1).
#pragma once

#include <map>
#include <mutex>
#include <vector>

#include "core/nn/layers.h"
#include "core/random.h"
#include "models/kv_cache.h"
#include "models/model_parallelism.h"
#include "models/transformer_layer.h"
#include "parallel/rng_tracker.h"
#include "parallel/tensor_parallel_linear.h"
#include "parallel/vocab_parallel.h"

namespace tessera {

struct LmBatch {
  Tensor tokens;     // [B, T] i64
  Tensor labels;     // [B, T] i64 (tokens shifted by one); ignore_index where nothing to predict
  Tensor loss_mask;  // [B, T] f32, or undefined (all ones)
};

class GptModel : public Module {
 public:
  // Parameters drawn from `seed` (same seed, same weights, on any device and any tp size).
  GptModel(const TransformerConfig& config, uint64_t seed, ParamOptions options = {},
           ModelParallelism parallel = {});

  const TransformerConfig& config() const { return config_; }
  const ModelParallelism& parallelism() const { return parallel_; }
  // tokens [B, T] (i32/i64) -> logits [B, T, V] (under tp all-gathered from the shards).
  Tensor forward(const Tensor& tokens) const;
  // Decoding (eval mode; records no gradients): tokens [B, T] are the next T tokens of each
  // row of `cache`, row b's at positions cache.length(b) .. + T - 1. Returns their logits
  // [B, T, V] and advances the cache by T. On a GPU, T > 1 needs empty cache rows (cuDNN's
  // path refuses causal attention with 1 < Tq < Tk, core/cuda/cudnn_attention.cpp).
  // Not with sequence parallelism (a decoding step's few tokens do not split).
  Tensor forward(const Tensor& tokens, KvCache& cache) const;
  // An empty cache for `batch` rows of up to `capacity` tokens, in the model's dtype and device
  // (this rank's key/value heads under tp).
  KvCache new_kv_cache(int64_t batch, int64_t capacity) const;
  // Cross-entropy over the tokens that count (loss mask, ignore_index = -100): their mean, or
  // their sum (trainers divide by the token count of the whole global batch).
  Tensor loss(const LmBatch& batch, LossReduction reduction = LossReduction::Mean) const;
  // Recompute each layer's activations in backward instead of keeping them (Megatron's
  // "full" recompute granularity with the uniform method, one layer per chunk).
  void set_recompute(bool recompute) { recompute_ = recompute; }
  // The default dropout stream (the trainer saves and restores it with checkpoints). With
  // sequence parallelism dropout draws from rng_tracker().fork() instead.
  Generator& dropout_generator() const { return rng_.default_generator(); }
  RngTracker& rng_tracker() const { return rng_; }

  // With sequence parallelism, sums over tp the gradients of the replicated parameters (norms,
  // row-parallel biases, position embeddings): each rank saw only its share of the sequence.
  // A no-op otherwise. Call after the last micro-batch's backward, before the optimizer step.
  void finalize_tensor_parallel_grads() const;
  // Aligned with parameters(): true where the parameter is split over tp (its gradient norm
  // sums over the ranks), false where every rank holds it whole (count it once). All false
  // without tp.
  std::vector<bool> parameter_is_tensor_parallel_sharded() const;

 private:
  // Token embeddings plus, for learned positions, those of `positions` ([T] or [B, T]).
  Tensor embed(const Tensor& tokens, const Tensor& positions) const;
  Tensor hidden_states(const Tensor& tokens) const;
  Tensor final_norm(const ResidualStream& stream) const;
  // Single rank: logits of the real vocabulary [..., V]. Under tp: this rank's shard of the
  // padded vocabulary [..., Vp/tp], for the whole sequence.
  Tensor logits(const Tensor& hidden) const;
  // Logits [..., V] for inference (gathered under tp).
  Tensor full_logits(const Tensor& hidden) const;
  const RopeTables* cached_rope_tables(int64_t seq_len, Device device) const;

  TransformerConfig config_;
  ModelParallelism parallel_;
  std::shared_ptr<VocabParallelEmbedding> word_embeddings_;
  std::shared_ptr<Embedding> position_embeddings_;
  std::shared_ptr<ModuleList> layers_;
  std::shared_ptr<Norm> final_norm_;
  std::shared_ptr<ColumnParallelLinear> output_layer_;
  std::vector<Tensor> replicated_parameters_;  // held whole by every tp rank
  bool recompute_ = false;
  mutable RngTracker rng_;
  mutable std::mutex rope_mutex_;
  mutable std::map<std::pair<int64_t, std::string>, RopeTables> rope_cache_;
};

}  // namespace tessera
