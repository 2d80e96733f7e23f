// Megatron's vocabulary-parallel embedding and cross-entropy over a tensor-parallel group `tp`
// (passed explicitly; it must outlive the layer and every graph built with it). The padded
// vocabulary Vp divides by tp.size(); rank r owns the rows [r * Vp/tp, (r + 1) * Vp/tp).
//
// VocabParallelEmbedding: weight [Vp/tp, C]. A token outside this rank's rows gives a zero
// row, so summing over tp gives every token its embedding: forward all-reduces
// (reduce_from_tensor_parallel) or, with sequence parallelism, reduce-scatters along the
// sequence dim (each rank keeps its T/tp tokens). Its gradient reaches only this rank's rows.
// A null `tp` makes the single-rank layer, computing exactly what Embedding computes.
// Initialisation: every rank draws the full [Vp, C] table exactly as Embedding would from the
// same generator state and keeps its rows, so a tp run starts from the single-rank weights.
//
// vocab_parallel_cross_entropy: logits [..., Vp/tp], this rank's vocabulary shard, targets
// [...] (global ids, the same on every rank). Megatron's algorithm, never gathering the full
// logits: the row max is all-reduced (max), then the sum of exp(logit - max) and the target's
// logit (taken by the rank that owns it, 0 elsewhere) are all-reduced (sum); the loss
// log(sum) + max - target logit is then the same on every rank. Only the first `vocab_size`
// columns of the padded vocabulary are real: padded columns get no probability mass and no
// gradient. Backward (softmax - onehot on the local shard) needs no communication. Losses are
// f32 (f64 for f64 logits) whatever the logits' dtype. ignore_index, loss_mask and the
// reduction behave exactly as in cross_entropy (core/ops/nn.h); targets outside
// [0, vocab_size) other than ignore_index are refused.
#pragma once

#include "core/nn/layers.h"
#include "core/ops/nn.h"
#include "core/random.h"

namespace tessera {

class Communicator;  // parallel/communicator.h

struct VocabParallelEmbeddingOptions {
  bool sequence_parallel = false;  // reduce-scatter the output along sequence_dim
  int64_t sequence_dim = 0;
  double init_std = 0.02;
  ParamOptions param = {};
};

class VocabParallelEmbedding : public Module {
 public:
  // num_embeddings: the padded vocabulary Vp (divisible by tp's size).
  VocabParallelEmbedding(int64_t num_embeddings, int64_t dim, Communicator* tp, Generator& generator,
                         VocabParallelEmbeddingOptions options = {});
  // ids [...] (i32/i64) -> [..., C] (with sequence parallelism, sequence_dim divided by tp).
  Tensor forward(const Tensor& ids) const;
  const Tensor& weight() const { return weight_; }
  // This rank's first row in the full table.
  int64_t vocab_start() const { return vocab_start_; }

 private:
  Communicator* tp_;
  VocabParallelEmbeddingOptions options_;
  int64_t num_embeddings_;
  int64_t vocab_start_;
  Tensor weight_;
};

Tensor vocab_parallel_cross_entropy(const Tensor& logits, const Tensor& targets, int64_t vocab_size, Communicator& tp,
                                    const CrossEntropyOptions& options = {});

}  // namespace tessera
