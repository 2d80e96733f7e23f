// Causal self-attention with grouped-query heads.
// Parameters (Megatron-core names):
//   linear_qkv.weight [(H + 2 KV) D, C] (+ .bias): rows grouped per key/value head, Megatron's
//       layout: for each of the KV groups, its H/KV query heads, then its key, then its value
//       head. A tensor-parallel rank then owns whole groups.
//   linear_proj.weight [C, H D] (+ .bias), initialised with the scaled residual std.
// Tensor parallel (see model_parallelism.h): linear_qkv is column-parallel over whole groups
// (rank r holds groups [r KV/tp, (r + 1) KV/tp), contiguous rows in the grouped layout) and
// so computes H/tp query heads and KV/tp key/value heads; linear_proj is row-parallel over
// those heads' columns (bias replicated).
// Activations are [B, T, C]; heads are [B, T, H, D] (what the attention kernel takes).
// With a KV cache (inference), x holds the next T tokens of each cached row: their keys and
// values join the row's cached ones and the queries attend to all of them (bottom-right
// aligned, see core/backend.h), one row at a time since rows hold different lengths.
// Packed sequences (DocumentLengths): a row holds several documents back to back; each attends
// causally within itself only, with RoPE positions restarting at 0. Attention then runs per
// document segment (q/k/v split along T, views), on any backend, and the segments' outputs are
// concatenated back in place.
#pragma once

#include <array>

#include <vector>

#include "core/nn/module.h"
#include "models/kv_cache.h"
#include "models/model_parallelism.h"
#include "models/transformer_config.h"
#include "parallel/tensor_parallel_linear.h"

namespace tessera {

// Per row of a batch, the lengths of the documents it holds, in order, summing to T (padding at
// the end counts as a document of its own or as part of the last one). Empty: one document
// per row.
using DocumentLengths = std::vector<std::vector<int64_t>>;
// Throws unless `documents` has `batch` rows of positive lengths, each summing to `seq_length`.
void check_document_lengths(const DocumentLengths& documents, int64_t batch, int64_t seq_length);

struct RopeTables {
  Tensor cos;  // [T, D/2]
  Tensor sin;
};

// One layer's slot in a KV cache; an empty one (cache == nullptr) means no cache (training).
struct LayerCache {
  KvCache* cache = nullptr;
  int64_t layer = 0;
};

class SelfAttention : public Module {
 public:
  SelfAttention(const TransformerConfig& config, Generator& generator, ParamOptions options,
                const ModelParallelism& parallel = {});
  // x [B, T, C] ([B, T/tp, C] with sequence parallelism) -> the same shape. rope: the tables
  // for the whole sequence (with a cache: for its whole capacity, rows indexed by position),
  // or empty for learned positions. A cache holds this rank's key/value heads. documents: the
  // packed rows' document lengths over the whole sequence (null or empty: one document per row,
  // the ordinary path); not with a cache.
  Tensor forward(const Tensor& x, const RopeTables* rope_tables, LayerCache cache = {},
                 const DocumentLengths* documents = nullptr) const;
  // Parameters every tp rank holds whole (linear_proj.bias).
  std::vector<Tensor> replicated_parameters() const;

 private:
  // The QKV projection of x as [B, T, KV, H/KV + 2, D]: per group its query heads, its key and
  // its value (this rank's heads, the whole sequence).
  Tensor packed_projection(const Tensor& x) const;
  // q [B, T, H, D], k and v [B, T, KV, D] of x.
  std::array<Tensor, 3> project(const Tensor& x) const;
  // Each row's attention over its cached keys and values plus the new ones, [B, T, H, D].
  Tensor attend_with_cache(const Tensor& q, const Tensor& k, const Tensor& v, const RopeTables* rope_tables,
                           LayerCache cache) const;
  // Causal attention (after RoPE from position 0) within each document of each row, [B, T, H, D].
  Tensor attend_documents(const Tensor& q, const Tensor& k, const Tensor& v, const RopeTables* rope_tables,
                          const DocumentLengths& documents) const;

  int64_t heads_, groups_, head_dim_;  // heads and groups of this rank
  std::shared_ptr<ColumnParallelLinear> qkv_;
  std::shared_ptr<RowParallelLinear> proj_;
};

}  // namespace tessera
