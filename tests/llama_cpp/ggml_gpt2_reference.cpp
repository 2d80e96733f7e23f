#include "tests/llama_cpp/ggml_gpt2_reference.h"

#include <fmt/format.h>

#include <cmath>

#include "core/check.h"
#include "core/half.h"

namespace tessera::testing {
namespace {

using Matrix = std::vector<std::vector<double>>;  // [rows][cols]

Matrix zeros(int64_t rows, int64_t cols) { return Matrix(size_t(rows), std::vector<double>(size_t(cols))); }

// A host f32 parameter as a flat vector, its shape checked.
std::vector<float> values(const std::map<std::string, Tensor>& p, const std::string& name, Shape shape) {
  const auto it = p.find(name);
  TS_CHECK(it != p.end(), "ggml reference: parameter ", name, " is missing");
  TS_CHECK(it->second.shape() == shape, "ggml reference: ", name, " has shape ", it->second.shape(), ", expected ",
           shape);
  return it->second.contiguous().to_vector<float>();
}

Matrix layer_norm(const Matrix& x, const std::vector<float>& w, const std::vector<float>& b, double eps) {
  Matrix y = x;
  for (auto& row : y) {
    double mean = 0, var = 0;
    for (double v : row) mean += v;
    mean /= double(row.size());
    for (double v : row) var += (v - mean) * (v - mean);
    const double inv = 1.0 / std::sqrt(var / double(row.size()) + eps);
    for (size_t i = 0; i < row.size(); ++i) row[i] = (row[i] - mean) * inv * w[i] + b[i];
  }
  return y;
}

// x [T][in] times W^T (W [out][in] row-major) plus b (empty: none).
Matrix linear(const Matrix& x, const std::vector<float>& W, const std::vector<float>& b, int64_t out) {
  const size_t in = x[0].size();
  Matrix y = zeros(int64_t(x.size()), out);
  for (size_t t = 0; t < x.size(); ++t)
    for (int64_t o = 0; o < out; ++o) {
      double s = b.empty() ? 0.0 : b[size_t(o)];
      for (size_t i = 0; i < in; ++i) s += x[t][i] * W[size_t(o) * in + i];
      y[t][size_t(o)] = s;
    }
  return y;
}

}  // namespace

float ggml_table_gelu(float x) {
  if (x <= -10.0f) return 0.0f;
  if (x >= 10.0f) return x;
  const float h = Half(x);  // the table's index: x rounded to f16
  // ggml_gelu_f32's tanh form, in f32, stored as f16.
  const float g = 0.5f * h * (1.0f + std::tanh(0.79788456080286535587989211986876f * h * (1.0f + 0.044715f * h * h)));
  return Half(g);
}

std::vector<float> ggml_gpt2_last_logits(const TransformerConfig& c, const std::map<std::string, Tensor>& p,
                                         const std::vector<int32_t>& ids) {
  const int64_t C = c.hidden_size, H = c.num_attention_heads, D = C / H, F = c.ffn_hidden_size, T = int64_t(ids.size());
  const int64_t Vp = c.padded_vocab_size();
  TS_CHECK(c.num_query_groups == H, "ggml reference: GPT-2 has no grouped-query attention");
  const std::vector<float> wte = values(p, "embedding.word_embeddings.weight", {Vp, C});
  const std::vector<float> wpe = values(p, "embedding.position_embeddings.weight", {c.max_position_embeddings, C});
  Matrix x = zeros(T, C);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < C; ++i)
      x[size_t(t)][size_t(i)] = double(wte[size_t(ids[size_t(t)] * C + i)]) + double(wpe[size_t(t * C + i)]);

  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string n = fmt::format("decoder.layers.{}.", l);
    const Matrix h1 = layer_norm(x, values(p, n + "input_layernorm.weight", {C}),
                                 values(p, n + "input_layernorm.bias", {C}), c.norm_epsilon);
    // Rows of head h: [q (D rows), k (D), v (D)] at h 3D.
    const Matrix qkv = linear(h1, values(p, n + "self_attention.linear_qkv.weight", {3 * C, C}),
                              values(p, n + "self_attention.linear_qkv.bias", {3 * C}), 3 * C);
    Matrix attn = zeros(T, C);
    for (int64_t h = 0; h < H; ++h) {
      const size_t q0 = size_t(h * 3 * D), k0 = q0 + size_t(D), v0 = k0 + size_t(D);
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> score(size_t(t + 1));
        double top = -INFINITY;
        for (int64_t s = 0; s <= t; ++s) {
          double dot = 0;
          for (int64_t d = 0; d < D; ++d) dot += qkv[size_t(t)][q0 + size_t(d)] * qkv[size_t(s)][k0 + size_t(d)];
          score[size_t(s)] = dot / std::sqrt(double(D));
          top = std::max(top, score[size_t(s)]);
        }
        double total = 0;
        for (double& v : score) total += (v = std::exp(v - top));
        for (int64_t d = 0; d < D; ++d) {
          double sum = 0;
          for (int64_t s = 0; s <= t; ++s) sum += score[size_t(s)] * qkv[size_t(s)][v0 + size_t(d)];
          attn[size_t(t)][size_t(h * D + d)] = sum / total;
        }
      }
    }
    const Matrix proj = linear(attn, values(p, n + "self_attention.linear_proj.weight", {C, C}),
                               values(p, n + "self_attention.linear_proj.bias", {C}), C);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < C; ++i) x[size_t(t)][size_t(i)] += proj[size_t(t)][size_t(i)];
    const Matrix h2 = layer_norm(x, values(p, n + "pre_mlp_layernorm.weight", {C}),
                                 values(p, n + "pre_mlp_layernorm.bias", {C}), c.norm_epsilon);
    Matrix up =
        linear(h2, values(p, n + "mlp.linear_fc1.weight", {F, C}), values(p, n + "mlp.linear_fc1.bias", {F}), F);
    // ggml's GELU takes and returns f32 tensors: the pre-activation is f32 before the table.
    for (auto& row : up)
      for (double& v : row) v = ggml_table_gelu(float(v));
    const Matrix down =
        linear(up, values(p, n + "mlp.linear_fc2.weight", {C, F}), values(p, n + "mlp.linear_fc2.bias", {C}), C);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < C; ++i) x[size_t(t)][size_t(i)] += down[size_t(t)][size_t(i)];
  }
  const Matrix last = layer_norm({x.back()}, values(p, "decoder.final_layernorm.weight", {C}),
                                 values(p, "decoder.final_layernorm.bias", {C}), c.norm_epsilon);
  const std::string head = c.tie_word_embeddings ? "embedding.word_embeddings.weight" : "output_layer.weight";
  const Matrix logits = linear(last, values(p, head, {Vp, C}), {}, c.vocab_size);
  return std::vector<float>(logits[0].begin(), logits[0].end());
}

}  // namespace tessera::testing
