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
// LoRA (config.lora.rank > 0, models/lora.h): each target linear gains
// <target>.adapter.linear_in.weight and .linear_out.weight, and every other parameter is
// frozen (requires_grad false); the adapters' replicated factors join the replicated list.
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
//
// Pipeline parallelism (ModelParallelism::pipeline): the model is one piece, virtual stage
// (stage, chunk) of a PipelineLayout: its layers keep their global names
// (decoder.layers.<global index>.*), the first piece adds the embedding, the last the final
// norm and output layer. Each piece draws exactly the values the whole model draws for its
// parameters (the init generator skips the other pieces' draws), so the pieces of a layout
// together are the single-rank model. Pieces pass hidden states [B, T, C] ([B, T/tp, C] with
// sequence parallelism) to each other: forward_stage() on every piece but the last,
// stage_loss() on the last. With tied embeddings the last piece (when it is not also the first)
// holds a copy of the word embedding table, under the same name embedding.word_embeddings.weight
// and drawn identically, as its output layer; finalize_pipeline_grads() sums the two copies'
// gradients over the embedding group (first and last pp rank), so they stay identical.
// Dropout masks of a piece come from its own rng_tracker(), not the single-rank model's.
#pragma once

#include <map>
#include <mutex>
#include <vector>

#include "core/nn/layers.h"
#include "core/random.h"
#include "models/kv_cache.h"
#include "models/model_parallelism.h"
#include "models/transformer_layer.h"
#include "parallel/fsdp.h"
#include "parallel/rng_tracker.h"
#include "parallel/tensor_parallel_linear.h"
#include "parallel/vocab_parallel.h"

namespace tessera {

struct LmBatch {
  Tensor tokens;     // [B, T] i64
  Tensor labels;     // [B, T] i64 (tokens shifted by one); ignore_index where nothing to predict
  Tensor loss_mask;  // [B, T] f32, or undefined (all ones)
  // Packing (host-side): per row, the lengths of the documents (conversations) it holds back to
  // back, summing to T. Each document attends causally within itself only and its positions
  // restart at 0 (learned position embeddings and RoPE). Empty: one document per row (the
  // ordinary path, no extra work). Every pipeline stage's layers read it.
  DocumentLengths document_lengths = {};
};

class GptModel : public Module {
 public:
  // Parameters drawn from `seed` (same seed, same weights, on any device and any tp size).
  GptModel(const TransformerConfig& config, uint64_t seed, ParamOptions options = {}, ModelParallelism parallel = {});

  const TransformerConfig& config() const { return config_; }
  const ModelParallelism& parallelism() const { return parallel_; }
  // tokens [B, T] (i32/i64) -> logits [B, T, V] (under tp all-gathered from the shards).
  Tensor forward(const Tensor& tokens) const;
  // tokens [B, T] -> the final (normed) hidden states [B, T, C]: what forward() multiplies by
  // the output layer, the input of a reward or value head (posttrain/reward_head.h). The whole
  // model only, without sequence parallelism or FSDP (each would leave the states sharded).
  Tensor forward_hidden(const Tensor& tokens) const;
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

  // ---- pipeline pieces (the whole model is the piece that is both first and last) ----
  bool has_embedding() const { return first_piece_; }  // takes tokens
  bool has_head() const { return last_piece_; }        // ends in the loss
  // Global indices of this piece's transformer layers (ascending, possibly empty).
  const std::vector<int64_t>& layer_indices() const { return layer_indices_; }
  // A piece's input is the tokens [B, T] where it holds the embedding, else the previous
  // piece's output. forward_stage (every piece but the last): the hidden states after this
  // piece's layers, [B, T, C] ([B, T/tp, C], this rank's sequence shard, with sequence
  // parallelism). stage_loss (the last piece): loss() of batch's labels and mask, from `input`.
  // documents: the micro-batch's LmBatch::document_lengths (stage_loss reads batch's).
  Tensor forward_stage(const Tensor& input, const DocumentLengths& documents = {}) const;
  Tensor stage_loss(const Tensor& input, const LmBatch& batch, LossReduction reduction = LossReduction::Mean) const;
  // Tied embeddings under pp: sums the word embedding table's gradient over `embedding_group`
  // (this tp rank's first and last pp rank, which hold the two copies; Megatron's embedding
  // group) so both copies take the same step. Collective over the group on the pieces holding a
  // copy; a no-op on other pieces, for untied models and for the whole model. Call after the
  // last micro-batch's backward, before the optimizer step.
  void finalize_pipeline_grads(Communicator& embedding_group) const;
  // Aligned with parameters(): true for the last piece's copy of a tied embedding table. Its
  // gradient equals the first piece's after finalize_pipeline_grads: count it once in a norm.
  std::vector<bool> parameter_is_shared_copy() const;
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

  // ---- ZeRO-3 / FSDP (parallel/fsdp.h) ----
  // The units, whose parameters concatenated are parameters() in order: 0 the embedding (word and
  // position tables), 1 .. L the layers, L + 1 the head (final norm, untied output layer). A tied
  // table stays in unit 0 and the head uses it out of order. The whole model only (no pipeline).
  std::vector<std::vector<Tensor>> fsdp_units() const;
  // Runs every unit between fsdp->pre_forward and post_forward (nullptr: off). `fsdp` must have
  // been built from fsdp_units() and outlive its use. Not with sequence parallelism (its
  // replicated gradients are summed over tp after backward, FSDP has reduced them by then) nor
  // with KV-cache decoding (gather_full_parameters() and set_fsdp(nullptr) first).
  void set_fsdp(FullyShardedDataParallel* fsdp);

 private:
  // Around each unit's forward when FSDP is on; identity otherwise.
  void fsdp_pre_forward(const std::vector<size_t>& units) const;
  std::vector<Tensor> fsdp_post_forward(const std::vector<size_t>& units, std::vector<Tensor> outputs) const;
  std::vector<size_t> head_units() const;  // the head, then unit 0 where the table is tied
  // Token embeddings plus, for learned positions, those of `positions` ([T] or [B, T]).
  Tensor embed(const Tensor& tokens, const Tensor& positions) const;
  // Embedding (first piece) and this piece's layers on a piece's input, packed rows
  // (LmBatch::document_lengths) attending within their documents.
  ResidualStream run_layers(const Tensor& input, const DocumentLengths& documents) const;
  // The full sequence length T of a piece's input (tokens, or hidden states, sequence-sharded
  // under sequence parallelism), checked against the model's limits.
  int64_t sequence_length(const Tensor& input) const;
  // The output layer's table where this piece holds one (the tied table on the first piece).
  const Tensor& output_table() const;
  Tensor final_norm(const ResidualStream& stream) const;
  // Single rank: logits of the real vocabulary [..., V]. Under tp: this rank's shard of the
  // padded vocabulary [..., Vp/tp], for the whole sequence.
  Tensor logits(const Tensor& hidden) const;
  // Logits [..., V] for inference (gathered under tp).
  Tensor full_logits(const Tensor& hidden) const;
  const RopeTables* cached_rope_tables(int64_t seq_len, Device device) const;
  // 0..t-1 (i64) on `device`, made once per (t, device): a host upload inside every forward
  // would synchronize the stream, which a captured CUDA graph cannot hold.
  const Tensor& cached_positions(int64_t t, Device device) const;
  // Packed rows' positions [B, T] (i64 on `device`), restarting at 0 with each document.
  static Tensor document_positions(const DocumentLengths& documents, Device device);

  TransformerConfig config_;
  ModelParallelism parallel_;
  ParamOptions param_options_;
  bool first_piece_ = true, last_piece_ = true;
  std::vector<int64_t> layer_indices_;
  std::shared_ptr<VocabParallelEmbedding> word_embeddings_;  // the first piece's, or the last's tied copy
  std::shared_ptr<Embedding> position_embeddings_;
  std::vector<std::shared_ptr<TransformerLayer>> layers_;
  std::shared_ptr<Norm> final_norm_;
  std::shared_ptr<ColumnParallelLinear> output_layer_;
  std::vector<Tensor> replicated_parameters_;  // held whole by every tp rank
  Tensor padded_column_mask_;  // single rank, last piece: [Vp] bias, 0 for real columns, -inf for padding
  bool recompute_ = false;
  FullyShardedDataParallel* fsdp_ = nullptr;
  mutable RngTracker rng_;
  mutable std::mutex rope_mutex_;  // guards both caches
  mutable std::map<std::pair<int64_t, std::string>, RopeTables> rope_cache_;
  mutable std::map<std::pair<int64_t, std::string>, Tensor> positions_cache_;
};

}  // namespace tessera
