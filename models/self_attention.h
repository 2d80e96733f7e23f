// Causal self-attention with grouped-query heads.
// Parameters (Megatron-core names):
//   linear_qkv.weight [(H + 2 KV) D, C] (+ .bias): rows grouped per key/value head, Megatron's
//       layout: for each of the KV groups, its H/KV query heads, then its key, then its value
//       head. A tensor-parallel rank then owns whole groups.
//   linear_proj.weight [C, H D] (+ .bias), initialised with the scaled residual std.
// Activations are [B, T, C]; heads are [B, T, H, D] (what the attention kernel takes).
#pragma once

#include "core/nn/layers.h"
#include "core/nn/module.h"
#include "models/transformer_config.h"

namespace tessera {

struct RopeTables {
  Tensor cos;  // [T, D/2]
  Tensor sin;
};

class SelfAttention : public Module {
 public:
  SelfAttention(const TransformerConfig& config, Generator& generator, ParamOptions options);
  // rope: the tables for this sequence length, or empty for learned positions.
  Tensor forward(const Tensor& x, const RopeTables* rope_tables) const;

 private:
  int64_t heads_, groups_, head_dim_;
  std::shared_ptr<Linear> qkv_;
  std::shared_ptr<Linear> proj_;
};

}  // namespace tessera
