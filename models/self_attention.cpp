#include "models/self_attention.h"

#include <cmath>

#include "core/ops/ops.h"

namespace tessera {

SelfAttention::SelfAttention(const TransformerConfig& config, Generator& generator, ParamOptions options)
    : heads_(config.num_attention_heads), groups_(config.num_query_groups), head_dim_(config.head_dim()) {
  int64_t qkv_out = (heads_ + 2 * groups_) * head_dim_;
  double residual_std = config.init_method_std / std::sqrt(2.0 * double(config.num_layers));
  qkv_ = register_module("linear_qkv", std::make_shared<Linear>(config.hidden_size, qkv_out, config.add_bias_linear,
                                                                generator, config.init_method_std, options));
  proj_ = register_module("linear_proj", std::make_shared<Linear>(heads_ * head_dim_, config.hidden_size,
                                                                  config.add_bias_linear, generator, residual_std,
                                                                  options));
}

Tensor SelfAttention::forward(const Tensor& x, const RopeTables* rope_tables) const {
  int64_t b = x.size(0), t = x.size(1), per_group = heads_ / groups_;
  // [B, T, KV, H/KV + 2, D]: per group its query heads, its key and its value.
  Tensor qkv = qkv_->forward(x).view({b, t, groups_, per_group + 2, head_dim_});
  std::vector<Tensor> parts = split(qkv, {per_group, 1, 1}, 3);
  Tensor q = parts[0].reshape({b, t, heads_, head_dim_});
  Tensor k = parts[1].reshape({b, t, groups_, head_dim_});
  Tensor v = parts[2].reshape({b, t, groups_, head_dim_});
  if (rope_tables) {
    q = rope(q, rope_tables->cos, rope_tables->sin);
    k = rope(k, rope_tables->cos, rope_tables->sin);
  }
  Tensor attended = scaled_dot_product_attention(q, k, v, /*causal=*/true);
  return proj_->forward(attended.view({b, t, heads_ * head_dim_}));
}

}  // namespace tessera
