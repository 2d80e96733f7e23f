#include "models/self_attention.h"

#include <cmath>

#include "core/ops/ops.h"

namespace tessera {

SelfAttention::SelfAttention(const TransformerConfig& config, Generator& generator, ParamOptions options,
                             const ModelParallelism& parallel)
    : heads_(config.num_attention_heads / parallel.tp_size()),
      groups_(config.num_query_groups / parallel.tp_size()),
      head_dim_(config.head_dim()) {
  const int64_t heads = config.num_attention_heads, groups = config.num_query_groups;
  double residual_std = config.init_method_std / std::sqrt(2.0 * double(config.num_layers));
  qkv_ = register_module("linear_qkv", std::make_shared<ColumnParallelLinear>(
                                           config.hidden_size, (heads + 2 * groups) * head_dim_, parallel.tp, generator,
                                           ColumnParallelOptions{.bias = config.add_bias_linear,
                                                                 .sequence_parallel = parallel.sequence_parallel,
                                                                 .sequence_dim = kSequenceDim,
                                                                 .init_std = config.init_method_std,
                                                                 .param = options}));
  proj_ = register_module("linear_proj", std::make_shared<RowParallelLinear>(
                                             heads * head_dim_, config.hidden_size, parallel.tp, generator,
                                             RowParallelOptions{.bias = config.add_bias_linear,
                                                                .sequence_parallel = parallel.sequence_parallel,
                                                                .sequence_dim = kSequenceDim,
                                                                .init_std = residual_std,
                                                                .param = options}));
}

std::array<Tensor, 3> SelfAttention::project(const Tensor& x) const {
  // With sequence parallelism the projection all-gathers the sequence: read T from its output.
  Tensor projected = qkv_->forward(x);
  int64_t b = projected.size(0), t = projected.size(1), per_group = heads_ / groups_;
  // [B, T, KV, H/KV + 2, D]: per group its query heads, its key and its value.
  Tensor qkv = projected.view({b, t, groups_, per_group + 2, head_dim_});
  std::vector<Tensor> parts = split(qkv, {per_group, 1, 1}, 3);
  // Multi-head attention (one query head per group): each part is a strided view [B, T, H, D],
  // which attention reads in place on the GPU. Grouped queries need a copy to be [B, T, H, D].
  if (per_group == 1) return {parts[0].squeeze(3), parts[1].squeeze(3), parts[2].squeeze(3)};
  return {parts[0].reshape({b, t, heads_, head_dim_}), parts[1].reshape({b, t, groups_, head_dim_}),
          parts[2].reshape({b, t, groups_, head_dim_})};
}

Tensor SelfAttention::forward(const Tensor& x, const RopeTables* rope_tables, LayerCache cache) const {
  auto [q, k, v] = project(x);
  Tensor attended;
  if (cache.cache != nullptr) {
    attended = attend_with_cache(q, k, v, rope_tables, cache);
  } else {
    if (rope_tables) {
      q = rope(q, rope_tables->cos, rope_tables->sin);
      k = rope(k, rope_tables->cos, rope_tables->sin);
    }
    attended = scaled_dot_product_attention(q, k, v, /*causal=*/true);
  }
  return proj_->forward(attended.view({q.size(0), q.size(1), heads_ * head_dim_}));
}

std::vector<Tensor> SelfAttention::replicated_parameters() const {
  if (!proj_->bias().defined()) return {};
  return {proj_->bias()};
}

Tensor SelfAttention::attend_with_cache(const Tensor& q, const Tensor& k, const Tensor& v,
                                        const RopeTables* rope_tables, LayerCache cache) const {
  const int64_t t = q.size(1);
  std::vector<Tensor> rows;
  for (int64_t row = 0; row < q.size(0); ++row) {
    Tensor q_row = q.narrow(0, row, 1), k_row = k.narrow(0, row, 1);
    if (rope_tables) {
      // This row's tokens sit at positions length(row) .. length(row) + t - 1.
      const int64_t start = cache.cache->length(row);
      Tensor cos = rope_tables->cos.narrow(0, start, t), sin = rope_tables->sin.narrow(0, start, t);
      q_row = rope(q_row, cos, sin);
      k_row = rope(k_row, cos, sin);
    }
    auto [keys, values] = cache.cache->write(cache.layer, row, k_row, v.narrow(0, row, 1));
    rows.push_back(scaled_dot_product_attention(q_row, keys, values, /*causal=*/true));
  }
  return cat(rows, 0);
}

}  // namespace tessera
