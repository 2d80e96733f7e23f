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
#pragma once

#include <array>

#include <vector>

#include "core/nn/module.h"
#include "models/kv_cache.h"
#include "models/model_parallelism.h"
#include "models/transformer_config.h"
#include "parallel/tensor_parallel_linear.h"

namespace tessera {

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
  // or empty for learned positions. A cache holds this rank's key/value heads.
  Tensor forward(const Tensor& x, const RopeTables* rope_tables, LayerCache cache = {}) const;
  // Parameters every tp rank holds whole (linear_proj.bias).
  std::vector<Tensor> replicated_parameters() const;

 private:
  // q [B, T, H, D], k and v [B, T, KV, D] of x (this rank's heads, the whole sequence).
  std::array<Tensor, 3> project(const Tensor& x) const;
  // Each row's attention over its cached keys and values plus the new ones, [B, T, H, D].
  Tensor attend_with_cache(const Tensor& q, const Tensor& k, const Tensor& v, const RopeTables* rope_tables,
                           LayerCache cache) const;

  int64_t heads_, groups_, head_dim_;  // heads and groups of this rank
  std::shared_ptr<ColumnParallelLinear> qkv_;
  std::shared_ptr<RowParallelLinear> proj_;
};

}  // namespace tessera
