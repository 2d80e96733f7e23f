#include "launcher/hf_format.h"

#include <fmt/format.h>

#include <array>

#include "core/check.h"
#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"

namespace tessera {
namespace {

// ---- reshuffles, on the host ----

// A [N, ...] tensor as [N, rest] (a bias [N] becomes [N, 1]).
Tensor as_rows(const Tensor& t) { return t.reshape({t.size(0), t.numel() / t.size(0)}); }

Tensor rows_back(const Tensor& rows, const Shape& like_tail, int64_t n) {
  Shape shape{n};
  shape.insert(shape.end(), like_tail.begin(), like_tail.end());
  return rows.reshape(shape).contiguous();
}

Tensor join_grouped_qkv(const TransformerConfig& c, const Tensor& q, const Tensor& k, const Tensor& v) {
  const int64_t H = c.num_attention_heads, KV = c.num_query_groups, D = c.head_dim(), r = H / KV;
  const Shape tail(q.shape().begin() + 1, q.shape().end());
  const int64_t width = q.numel() / q.size(0);
  const Tensor grouped = cat({as_rows(q).reshape({KV, r, D, width}), as_rows(k).reshape({KV, 1, D, width}),
                              as_rows(v).reshape({KV, 1, D, width})},
                             1);
  return rows_back(grouped.reshape({(H + 2 * KV) * D, width}), tail, (H + 2 * KV) * D);
}

Tensor transposed(const Tensor& w) { return w.transpose(0, 1).contiguous(); }

Tensor unpad_vocab(const TransformerConfig& c, const Tensor& table) {
  return table.narrow(0, 0, c.vocab_size).contiguous();
}

Tensor pad_vocab(const TransformerConfig& c, const Tensor& table) {
  const int64_t padding = c.padded_vocab_size() - c.vocab_size;
  if (padding == 0) return table;
  return cat({table, Tensor::zeros({padding, table.size(1)}, table.dtype())}, 0);
}

// ---- lookups that name what is missing ----

class Source {
 public:
  Source(const std::map<std::string, Tensor>& tensors, std::string what) : tensors_(tensors), what_(std::move(what)) {}
  const Tensor& get(const std::string& name, const Shape& shape) const {
    auto it = tensors_.find(name);
    TS_CHECK(it != tensors_.end(), what_, " has no tensor ", name);
    TS_CHECK(it->second.shape() == shape, what_, ": tensor ", name, " has shape ", shape_str(it->second.shape()),
             ", the model needs ", shape_str(shape));
    TS_CHECK(it->second.device().is_cpu(), what_, ": tensor ", name, " is not on the host");
    return it->second;
  }

 private:
  const std::map<std::string, Tensor>& tensors_;
  std::string what_;
};

struct Dims {
  int64_t C, Vp, V, P, H, KV, D, F, L;
  explicit Dims(const TransformerConfig& c)
      : C(c.hidden_size), Vp(c.padded_vocab_size()), V(c.vocab_size), P(c.max_position_embeddings),
        H(c.num_attention_heads), KV(c.num_query_groups), D(c.head_dim()), F(c.ffn_hidden_size), L(c.num_layers) {}
  int64_t qkv_rows() const { return (H + 2 * KV) * D; }
};

std::string layer(int64_t l) { return fmt::format("decoder.layers.{}.", l); }

// ---- GPT-2 ----

NamedTensors gpt2_to_hf(const TransformerConfig& c, const Source& ours) {
  const Dims d(c);
  NamedTensors out;
  out.emplace_back("transformer.wte.weight", unpad_vocab(c, ours.get("embedding.word_embeddings.weight", {d.Vp, d.C})));
  out.emplace_back("transformer.wpe.weight", ours.get("embedding.position_embeddings.weight", {d.P, d.C}));
  for (int64_t l = 0; l < d.L; ++l) {
    const std::string p = layer(l), h = fmt::format("transformer.h.{}.", l);
    out.emplace_back(h + "ln_1.weight", ours.get(p + "input_layernorm.weight", {d.C}));
    out.emplace_back(h + "ln_1.bias", ours.get(p + "input_layernorm.bias", {d.C}));
    auto [qw, kw, vw] = split_grouped_qkv(c, ours.get(p + "self_attention.linear_qkv.weight", {d.qkv_rows(), d.C}));
    out.emplace_back(h + "attn.c_attn.weight", transposed(cat({qw, kw, vw}, 0)));
    auto [qb, kb, vb] = split_grouped_qkv(c, ours.get(p + "self_attention.linear_qkv.bias", {d.qkv_rows()}));
    out.emplace_back(h + "attn.c_attn.bias", cat({qb, kb, vb}, 0));
    out.emplace_back(h + "attn.c_proj.weight", transposed(ours.get(p + "self_attention.linear_proj.weight", {d.C, d.C})));
    out.emplace_back(h + "attn.c_proj.bias", ours.get(p + "self_attention.linear_proj.bias", {d.C}));
    out.emplace_back(h + "ln_2.weight", ours.get(p + "pre_mlp_layernorm.weight", {d.C}));
    out.emplace_back(h + "ln_2.bias", ours.get(p + "pre_mlp_layernorm.bias", {d.C}));
    out.emplace_back(h + "mlp.c_fc.weight", transposed(ours.get(p + "mlp.linear_fc1.weight", {d.F, d.C})));
    out.emplace_back(h + "mlp.c_fc.bias", ours.get(p + "mlp.linear_fc1.bias", {d.F}));
    out.emplace_back(h + "mlp.c_proj.weight", transposed(ours.get(p + "mlp.linear_fc2.weight", {d.C, d.F})));
    out.emplace_back(h + "mlp.c_proj.bias", ours.get(p + "mlp.linear_fc2.bias", {d.C}));
  }
  out.emplace_back("transformer.ln_f.weight", ours.get("decoder.final_layernorm.weight", {d.C}));
  out.emplace_back("transformer.ln_f.bias", ours.get("decoder.final_layernorm.bias", {d.C}));
  if (!c.tie_word_embeddings)
    out.emplace_back("lm_head.weight", unpad_vocab(c, ours.get("output_layer.weight", {d.Vp, d.C})));
  return out;
}

std::map<std::string, Tensor> gpt2_from_hf(const TransformerConfig& c, const Source& hf) {
  const Dims d(c);
  std::map<std::string, Tensor> out;
  out["embedding.word_embeddings.weight"] = pad_vocab(c, hf.get("transformer.wte.weight", {d.V, d.C}));
  out["embedding.position_embeddings.weight"] = hf.get("transformer.wpe.weight", {d.P, d.C});
  for (int64_t l = 0; l < d.L; ++l) {
    const std::string p = layer(l), h = fmt::format("transformer.h.{}.", l);
    out[p + "input_layernorm.weight"] = hf.get(h + "ln_1.weight", {d.C});
    out[p + "input_layernorm.bias"] = hf.get(h + "ln_1.bias", {d.C});
    const std::vector<Tensor> w = split(transposed(hf.get(h + "attn.c_attn.weight", {d.C, 3 * d.C})), {d.C, d.C, d.C}, 0);
    out[p + "self_attention.linear_qkv.weight"] = join_grouped_qkv(c, w[0], w[1], w[2]);
    const std::vector<Tensor> b = split(hf.get(h + "attn.c_attn.bias", {3 * d.C}), {d.C, d.C, d.C}, 0);
    out[p + "self_attention.linear_qkv.bias"] = join_grouped_qkv(c, b[0], b[1], b[2]);
    out[p + "self_attention.linear_proj.weight"] = transposed(hf.get(h + "attn.c_proj.weight", {d.C, d.C}));
    out[p + "self_attention.linear_proj.bias"] = hf.get(h + "attn.c_proj.bias", {d.C});
    out[p + "pre_mlp_layernorm.weight"] = hf.get(h + "ln_2.weight", {d.C});
    out[p + "pre_mlp_layernorm.bias"] = hf.get(h + "ln_2.bias", {d.C});
    out[p + "mlp.linear_fc1.weight"] = transposed(hf.get(h + "mlp.c_fc.weight", {d.C, d.F}));
    out[p + "mlp.linear_fc1.bias"] = hf.get(h + "mlp.c_fc.bias", {d.F});
    out[p + "mlp.linear_fc2.weight"] = transposed(hf.get(h + "mlp.c_proj.weight", {d.F, d.C}));
    out[p + "mlp.linear_fc2.bias"] = hf.get(h + "mlp.c_proj.bias", {d.C});
  }
  out["decoder.final_layernorm.weight"] = hf.get("transformer.ln_f.weight", {d.C});
  out["decoder.final_layernorm.bias"] = hf.get("transformer.ln_f.bias", {d.C});
  if (!c.tie_word_embeddings) out["output_layer.weight"] = pad_vocab(c, hf.get("lm_head.weight", {d.V, d.C}));
  return out;
}

// ---- Llama ----

NamedTensors llama_to_hf(const TransformerConfig& c, const Source& ours) {
  const Dims d(c);
  const bool bias = c.add_bias_linear;
  NamedTensors out;
  out.emplace_back("model.embed_tokens.weight", unpad_vocab(c, ours.get("embedding.word_embeddings.weight", {d.Vp, d.C})));
  for (int64_t l = 0; l < d.L; ++l) {
    const std::string p = layer(l), h = fmt::format("model.layers.{}.", l);
    out.emplace_back(h + "input_layernorm.weight", ours.get(p + "input_layernorm.weight", {d.C}));
    auto [q, k, v] = split_grouped_qkv(c, ours.get(p + "self_attention.linear_qkv.weight", {d.qkv_rows(), d.C}));
    out.emplace_back(h + "self_attn.q_proj.weight", q);
    out.emplace_back(h + "self_attn.k_proj.weight", k);
    out.emplace_back(h + "self_attn.v_proj.weight", v);
    if (bias) {
      auto [qb, kb, vb] = split_grouped_qkv(c, ours.get(p + "self_attention.linear_qkv.bias", {d.qkv_rows()}));
      out.emplace_back(h + "self_attn.q_proj.bias", qb);
      out.emplace_back(h + "self_attn.k_proj.bias", kb);
      out.emplace_back(h + "self_attn.v_proj.bias", vb);
    }
    out.emplace_back(h + "self_attn.o_proj.weight", ours.get(p + "self_attention.linear_proj.weight", {d.C, d.H * d.D}));
    if (bias) out.emplace_back(h + "self_attn.o_proj.bias", ours.get(p + "self_attention.linear_proj.bias", {d.C}));
    out.emplace_back(h + "post_attention_layernorm.weight", ours.get(p + "pre_mlp_layernorm.weight", {d.C}));
    const std::vector<Tensor> gate_up = split(ours.get(p + "mlp.linear_fc1.weight", {2 * d.F, d.C}), {d.F, d.F}, 0);
    out.emplace_back(h + "mlp.gate_proj.weight", gate_up[0].contiguous());
    out.emplace_back(h + "mlp.up_proj.weight", gate_up[1].contiguous());
    if (bias) {
      const std::vector<Tensor> b = split(ours.get(p + "mlp.linear_fc1.bias", {2 * d.F}), {d.F, d.F}, 0);
      out.emplace_back(h + "mlp.gate_proj.bias", b[0].contiguous());
      out.emplace_back(h + "mlp.up_proj.bias", b[1].contiguous());
    }
    out.emplace_back(h + "mlp.down_proj.weight", ours.get(p + "mlp.linear_fc2.weight", {d.C, d.F}));
    if (bias) out.emplace_back(h + "mlp.down_proj.bias", ours.get(p + "mlp.linear_fc2.bias", {d.C}));
  }
  out.emplace_back("model.norm.weight", ours.get("decoder.final_layernorm.weight", {d.C}));
  if (!c.tie_word_embeddings)
    out.emplace_back("lm_head.weight", unpad_vocab(c, ours.get("output_layer.weight", {d.Vp, d.C})));
  return out;
}

std::map<std::string, Tensor> llama_from_hf(const TransformerConfig& c, const Source& hf) {
  const Dims d(c);
  const bool bias = c.add_bias_linear;
  std::map<std::string, Tensor> out;
  out["embedding.word_embeddings.weight"] = pad_vocab(c, hf.get("model.embed_tokens.weight", {d.V, d.C}));
  for (int64_t l = 0; l < d.L; ++l) {
    const std::string p = layer(l), h = fmt::format("model.layers.{}.", l);
    out[p + "input_layernorm.weight"] = hf.get(h + "input_layernorm.weight", {d.C});
    out[p + "self_attention.linear_qkv.weight"] =
        join_grouped_qkv(c, hf.get(h + "self_attn.q_proj.weight", {d.H * d.D, d.C}),
                         hf.get(h + "self_attn.k_proj.weight", {d.KV * d.D, d.C}),
                         hf.get(h + "self_attn.v_proj.weight", {d.KV * d.D, d.C}));
    if (bias)
      out[p + "self_attention.linear_qkv.bias"] = join_grouped_qkv(c, hf.get(h + "self_attn.q_proj.bias", {d.H * d.D}),
                                                                  hf.get(h + "self_attn.k_proj.bias", {d.KV * d.D}),
                                                                  hf.get(h + "self_attn.v_proj.bias", {d.KV * d.D}));
    out[p + "self_attention.linear_proj.weight"] = hf.get(h + "self_attn.o_proj.weight", {d.C, d.H * d.D});
    if (bias) out[p + "self_attention.linear_proj.bias"] = hf.get(h + "self_attn.o_proj.bias", {d.C});
    out[p + "pre_mlp_layernorm.weight"] = hf.get(h + "post_attention_layernorm.weight", {d.C});
    out[p + "mlp.linear_fc1.weight"] =
        cat({hf.get(h + "mlp.gate_proj.weight", {d.F, d.C}), hf.get(h + "mlp.up_proj.weight", {d.F, d.C})}, 0);
    if (bias)
      out[p + "mlp.linear_fc1.bias"] =
          cat({hf.get(h + "mlp.gate_proj.bias", {d.F}), hf.get(h + "mlp.up_proj.bias", {d.F})}, 0);
    out[p + "mlp.linear_fc2.weight"] = hf.get(h + "mlp.down_proj.weight", {d.C, d.F});
    if (bias) out[p + "mlp.linear_fc2.bias"] = hf.get(h + "mlp.down_proj.bias", {d.C});
  }
  out["decoder.final_layernorm.weight"] = hf.get("model.norm.weight", {d.C});
  if (!c.tie_word_embeddings) out["output_layer.weight"] = pad_vocab(c, hf.get("lm_head.weight", {d.V, d.C}));
  return out;
}

// ---- config.json readers ----

template <typename T>
T value_or(const nlohmann::json& j, const char* key, T fallback) {
  return j.contains(key) && !j.at(key).is_null() ? j.at(key).get<T>() : fallback;
}

void require(bool ok, const std::string& source, const std::string& key, const std::string& what) {
  TS_CHECK(ok, source, ": ", key, " ", what);
}

TransformerConfig gpt2_config(const nlohmann::json& j, const std::string& source) {
  TransformerConfig c;
  c.name = "hf-gpt2";
  c.hidden_size = j.at("n_embd").get<int64_t>();
  c.num_layers = j.at("n_layer").get<int64_t>();
  c.num_attention_heads = c.num_query_groups = j.at("n_head").get<int64_t>();
  c.ffn_hidden_size = value_or<int64_t>(j, "n_inner", 4 * c.hidden_size);
  c.vocab_size = j.at("vocab_size").get<int64_t>();
  c.max_position_embeddings = j.at("n_positions").get<int64_t>();
  c.norm_epsilon = value_or<double>(j, "layer_norm_epsilon", 1e-5);
  c.tie_word_embeddings = value_or<bool>(j, "tie_word_embeddings", true);
  const std::string act = value_or<std::string>(j, "activation_function", "gelu_new");
  require(act == "gelu_new" || act == "gelu_pytorch_tanh", source, "activation_function",
          "= " + act + ": Tessera's GPT-2 uses the tanh GELU (gelu_new)");
  require(!value_or<bool>(j, "scale_attn_by_inverse_layer_idx", false), source, "scale_attn_by_inverse_layer_idx",
          "= true is not supported (Tessera scales attention by 1/sqrt(head_dim) only)");
  require(value_or<bool>(j, "scale_attn_weights", true), source, "scale_attn_weights",
          "= false is not supported (Tessera scales attention by 1/sqrt(head_dim))");
  return c;
}

TransformerConfig llama_config(const nlohmann::json& j, const std::string& source) {
  TransformerConfig c;
  c.name = "hf-llama";
  c.normalization = Normalization::RMSNorm;
  c.activation = Activation::SwiGLU;
  c.position_embedding = PositionEmbedding::Rope;
  c.hidden_size = j.at("hidden_size").get<int64_t>();
  c.num_layers = j.at("num_hidden_layers").get<int64_t>();
  c.num_attention_heads = j.at("num_attention_heads").get<int64_t>();
  c.num_query_groups = value_or<int64_t>(j, "num_key_value_heads", c.num_attention_heads);
  c.ffn_hidden_size = j.at("intermediate_size").get<int64_t>();
  c.vocab_size = j.at("vocab_size").get<int64_t>();
  c.max_position_embeddings = j.at("max_position_embeddings").get<int64_t>();
  c.norm_epsilon = value_or<double>(j, "rms_norm_eps", 1e-6);
  c.rotary_base = value_or<double>(j, "rope_theta", 10000.0);
  c.tie_word_embeddings = value_or<bool>(j, "tie_word_embeddings", false);
  const bool attention_bias = value_or<bool>(j, "attention_bias", false), mlp_bias = value_or<bool>(j, "mlp_bias", false);
  require(attention_bias == mlp_bias, source, "attention_bias",
          "differs from mlp_bias: Tessera has one switch for both (add_bias_linear)");
  c.add_bias_linear = attention_bias;
  require(value_or<std::string>(j, "hidden_act", "silu") == "silu", source, "hidden_act", "must be silu (SwiGLU)");
  require(!j.contains("head_dim") || j.at("head_dim").is_null() ||
              j.at("head_dim").get<int64_t>() * c.num_attention_heads == c.hidden_size,
          source, "head_dim", "must be hidden_size / num_attention_heads");
  if (j.contains("rope_scaling") && !j.at("rope_scaling").is_null()) {
    const nlohmann::json& s = j.at("rope_scaling");
    const std::string type = value_or<std::string>(s, "rope_type", value_or<std::string>(s, "type", ""));
    require(type == "llama3", source, "rope_scaling.rope_type", "= " + type + ": only llama3 scaling is supported");
    c.rope_scaling.factor = s.at("factor").get<double>();
    c.rope_scaling.low_freq_factor = s.at("low_freq_factor").get<double>();
    c.rope_scaling.high_freq_factor = s.at("high_freq_factor").get<double>();
    c.rope_scaling.original_max_position = s.at("original_max_position_embeddings").get<int64_t>();
  }
  return c;
}

}  // namespace

std::array<Tensor, 3> split_grouped_qkv(const TransformerConfig& c, const Tensor& qkv) {
  const int64_t H = c.num_attention_heads, KV = c.num_query_groups, D = c.head_dim(), r = H / KV;
  const Shape tail(qkv.shape().begin() + 1, qkv.shape().end());
  const Tensor grouped = as_rows(qkv).reshape({KV, r + 2, D, qkv.numel() / qkv.size(0)});
  auto part = [&](int64_t first, int64_t count) {
    return rows_back(grouped.narrow(1, first, count).contiguous().reshape({KV * count * D, -1}), tail, KV * count * D);
  };
  return {part(0, r), part(r, 1), part(r + 1, 1)};
}


HfArchitecture hf_architecture(const TransformerConfig& c) {
  const bool gpt2 = c.normalization == Normalization::LayerNorm && c.activation == Activation::Gelu &&
                    c.position_embedding == PositionEmbedding::Learned;
  const bool llama = c.normalization == Normalization::RMSNorm && c.activation == Activation::SwiGLU &&
                     c.position_embedding == PositionEmbedding::Rope;
  TS_CHECK(gpt2 || llama, "model ", c.name,
           ": transformers has no class for this mix of normalization, activation and position embedding (export "
           "takes GPT-2: LayerNorm + GELU + learned, or Llama: RMSNorm + SwiGLU + rope)");
  if (gpt2) {
    TS_CHECK(c.add_bias_linear, "model ", c.name, ": GPT2LMHeadModel always has linear biases (add_bias_linear)");
    TS_CHECK(c.num_query_groups == c.num_attention_heads, "model ", c.name, ": num_query_groups ", c.num_query_groups,
             " != num_attention_heads ", c.num_attention_heads, ": GPT2LMHeadModel has no grouped-query attention");
  }
  return gpt2 ? HfArchitecture::Gpt2 : HfArchitecture::Llama;
}

NamedTensors to_hf_tensors(const TransformerConfig& config, const std::map<std::string, Tensor>& ours) {
  const Source source(ours, "the checkpoint");
  NoGradGuard no_grad;
  return hf_architecture(config) == HfArchitecture::Gpt2 ? gpt2_to_hf(config, source) : llama_to_hf(config, source);
}

std::map<std::string, Tensor> from_hf_tensors(const TransformerConfig& config, const std::map<std::string, Tensor>& hf,
                                              const std::string& source_name) {
  const Source source(hf, source_name);
  NoGradGuard no_grad;
  return hf_architecture(config) == HfArchitecture::Gpt2 ? gpt2_from_hf(config, source) : llama_from_hf(config, source);
}

nlohmann::ordered_json hf_config_json(const TransformerConfig& c, const HfSpecialIds& ids,
                                      const std::string& torch_dtype) {
  nlohmann::ordered_json j;
  if (hf_architecture(c) == HfArchitecture::Gpt2) {
    j = {{"architectures", {"GPT2LMHeadModel"}},
         {"model_type", "gpt2"},
         {"vocab_size", c.vocab_size},
         {"n_positions", c.max_position_embeddings},
         {"n_embd", c.hidden_size},
         {"n_layer", c.num_layers},
         {"n_head", c.num_attention_heads},
         {"n_inner", c.ffn_hidden_size},
         {"activation_function", "gelu_new"},
         {"layer_norm_epsilon", c.norm_epsilon},
         {"resid_pdrop", c.hidden_dropout},
         {"embd_pdrop", c.hidden_dropout},
         {"attn_pdrop", 0.0},
         {"initializer_range", c.init_method_std},
         {"scale_attn_weights", true},
         {"tie_word_embeddings", c.tie_word_embeddings}};
  } else {
    nlohmann::ordered_json scaling = nullptr;
    if (c.rope_scaling.factor != 0.0) {
      scaling = {{"rope_type", "llama3"},
                 {"factor", c.rope_scaling.factor},
                 {"low_freq_factor", c.rope_scaling.low_freq_factor},
                 {"high_freq_factor", c.rope_scaling.high_freq_factor},
                 {"original_max_position_embeddings", c.rope_scaling.original_max_position}};
    }
    j = {{"architectures", {"LlamaForCausalLM"}},
         {"model_type", "llama"},
         {"vocab_size", c.vocab_size},
         {"hidden_size", c.hidden_size},
         {"intermediate_size", c.ffn_hidden_size},
         {"num_hidden_layers", c.num_layers},
         {"num_attention_heads", c.num_attention_heads},
         {"num_key_value_heads", c.num_query_groups},
         {"head_dim", c.head_dim()},
         {"hidden_act", "silu"},
         {"max_position_embeddings", c.max_position_embeddings},
         {"rms_norm_eps", c.norm_epsilon},
         {"rope_theta", c.rotary_base},
         {"rope_scaling", scaling},
         {"attention_bias", c.add_bias_linear},
         {"mlp_bias", c.add_bias_linear},
         {"attention_dropout", 0.0},
         {"initializer_range", c.init_method_std},
         {"tie_word_embeddings", c.tie_word_embeddings}};
  }
  if (ids.bos >= 0) j["bos_token_id"] = ids.bos;
  if (ids.eos >= 0) j["eos_token_id"] = ids.eos;
  j["torch_dtype"] = torch_dtype;
  return j;
}

nlohmann::ordered_json hf_generation_config_json(const HfSpecialIds& ids) {
  nlohmann::ordered_json j = {{"_from_model_config", true}};
  if (ids.bos >= 0) j["bos_token_id"] = ids.bos;
  if (ids.eos >= 0) j["eos_token_id"] = ids.eos;
  return j;
}

TransformerConfig config_from_hf_json(const nlohmann::json& j, const std::string& source) {
  try {
    const std::string type = value_or<std::string>(j, "model_type", "");
    TS_CHECK(type == "gpt2" || type == "llama", source, ": model_type ", type.empty() ? "(missing)" : type,
             " is not one Tessera imports (gpt2, llama)");
    TransformerConfig c = type == "gpt2" ? gpt2_config(j, source) : llama_config(j, source);
    c.make_vocab_size_divisible_by = 128;
    c.validate();
    return c;
  } catch (const nlohmann::json::exception& e) {
    TS_CHECK(false, source, ": ", e.what());
  }
  return {};
}

}  // namespace tessera
