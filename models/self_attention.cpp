#include "models/self_attention.h"

#include <cmath>

#include "core/ops/ops.h"

namespace tessera {

void check_document_lengths(const DocumentLengths& documents, int64_t batch, int64_t seq_length) {
  TS_CHECK(static_cast<int64_t>(documents.size()) == batch, "document_lengths has ", documents.size(),
           " rows but the batch has ", batch, "; give one list of lengths per row (or none for unpacked rows)");
  for (size_t row = 0; row < documents.size(); ++row) {
    int64_t sum = 0;
    for (int64_t length : documents[row]) {
      TS_CHECK(length > 0, "document_lengths row ", row, " holds a length ", length,
               "; every document needs >= 1 token");
      sum += length;
    }
    TS_CHECK(sum == seq_length, "document_lengths row ", row, " sums to ", sum, " but the sequence length is ",
             seq_length, "; the lengths must cover the row (count the padding as a last document)");
  }
}

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

Tensor SelfAttention::packed_projection(const Tensor& x) const {
  // With sequence parallelism the projection all-gathers the sequence: read T from its output.
  Tensor projected = qkv_->forward(x);
  return projected.view({projected.size(0), projected.size(1), groups_, heads_ / groups_ + 2, head_dim_});
}

std::array<Tensor, 3> SelfAttention::project(const Tensor& x) const {
  Tensor qkv = packed_projection(x);
  int64_t b = qkv.size(0), t = qkv.size(1), per_group = heads_ / groups_;
  std::vector<Tensor> parts = split(qkv, {per_group, 1, 1}, 3);
  // Multi-head attention (one query head per group): each part is a strided view [B, T, H, D],
  // which attention reads in place on the GPU. Grouped queries need a copy to be [B, T, H, D].
  if (per_group == 1) return {parts[0].squeeze(3), parts[1].squeeze(3), parts[2].squeeze(3)};
  return {parts[0].reshape({b, t, heads_, head_dim_}), parts[1].reshape({b, t, groups_, head_dim_}),
          parts[2].reshape({b, t, groups_, head_dim_})};
}

Tensor SelfAttention::forward(const Tensor& x, const RopeTables* rope_tables, LayerCache cache,
                              const DocumentLengths* documents) const {
  const bool packed = documents != nullptr && !documents->empty();
  TS_CHECK(!packed || cache.cache == nullptr,
           "SelfAttention: packed documents and a KV cache do not combine; decode one document per row");
  if (!packed && cache.cache == nullptr && rope_tables == nullptr && heads_ == groups_) {
    // Multi-head attention with learned positions (GPT-2): [B, T, H, 3, D] is already the
    // packed layout attention reads in place and writes its gradient into.
    Tensor qkv = packed_projection(x);
    Tensor attended = packed_qkv_attention(qkv, /*causal=*/true);
    return proj_->forward(attended.view({qkv.size(0), qkv.size(1), heads_ * head_dim_}));
  }
  auto [q, k, v] = project(x);
  Tensor attended;
  if (cache.cache != nullptr) {
    attended = attend_with_cache(q, k, v, rope_tables, cache);
  } else if (packed) {
    attended = attend_documents(q, k, v, rope_tables, *documents);
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

Tensor SelfAttention::attend_documents(const Tensor& q, const Tensor& k, const Tensor& v, const RopeTables* rope_tables,
                                       const DocumentLengths& documents) const {
  const int64_t b = q.size(0);
  check_document_lengths(documents, b, q.size(1));
  // split, not narrow: one autograd node per split whose backward concatenates the pieces'
  // gradients, where each narrow would scatter into a zero tensor of the whole input.
  const std::vector<int64_t> ones(static_cast<size_t>(b), 1);
  const std::vector<Tensor> q_rows = split(q, ones, 0), k_rows = split(k, ones, 0), v_rows = split(v, ones, 0);
  std::vector<Tensor> rows;
  for (size_t row = 0; row < q_rows.size(); ++row) {
    const std::vector<int64_t>& lengths = documents[row];
    std::vector<Tensor> q_docs = split(q_rows[row], lengths, 1), k_docs = split(k_rows[row], lengths, 1);
    const std::vector<Tensor> v_docs = split(v_rows[row], lengths, 1);
    std::vector<Tensor> segments;
    for (size_t doc = 0; doc < lengths.size(); ++doc) {
      if (rope_tables) {
        // Each document's positions restart at 0: the tables' first `length` rows.
        Tensor cos = rope_tables->cos.narrow(0, 0, lengths[doc]), sin = rope_tables->sin.narrow(0, 0, lengths[doc]);
        q_docs[doc] = rope(q_docs[doc], cos, sin);
        k_docs[doc] = rope(k_docs[doc], cos, sin);
      }
      segments.push_back(scaled_dot_product_attention(q_docs[doc], k_docs[doc], v_docs[doc], /*causal=*/true));
    }
    rows.push_back(segments.size() == 1 ? segments[0] : cat(segments, 1));
  }
  return rows.size() == 1 ? rows[0] : cat(rows, 0);
}

}  // namespace tessera
