#include "launcher/trtllm_export.h"

#include <fmt/format.h>

#include <fstream>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>

#include "core/ops/ops.h"
#include "launcher/export_progress.h"
#include "launcher/hf_format.h"
#include "launcher/safetensors.h"

namespace tessera {
namespace {

std::string trtllm_dtype(DType dtype) {
  return dtype == DType::F16 ? "float16" : dtype == DType::BF16 ? "bfloat16" : "float32";
}

// Rows [begin, begin + count) of a 1-D or 2-D tensor, contiguous.
Tensor rows(const Tensor& t, int64_t begin, int64_t count) { return t.narrow(0, begin, count).contiguous(); }
// Shard r of tp of the rows / of the columns (the input features of a [out, in] weight).
Tensor row_shard(const Tensor& t, int r, int tp) { return rows(t, t.size(0) / tp * r, t.size(0) / tp); }
Tensor column_shard(const Tensor& t, int r, int tp) {
  return t.narrow(1, t.size(1) / tp * r, t.size(1) / tp).contiguous();
}

class HfTensors {
 public:
  explicit HfTensors(NamedTensors tensors) {
    for (auto& [name, t] : tensors) map_[name] = std::move(t);
  }
  const Tensor& get(const std::string& name) const {
    auto it = map_.find(name);
    TS_CHECK(it != map_.end(), "export trtllm: the model has no tensor ", name);
    return it->second;
  }
  bool has(const std::string& name) const { return map_.contains(name); }

 private:
  std::map<std::string, Tensor> map_;
};

// One layer's tensors in the [out, in] layout before the tp split (GPT-2's Conv1D transposed back).
struct Layer {
  Tensor ln1_w, ln1_b, q_w, k_w, v_w, q_b, k_b, v_b, dense_w, dense_b, ln2_w, ln2_b, fc_w, fc_b, gate_w, gate_b, proj_w,
      proj_b;
};

Layer gpt2_layer(const HfTensors& hf, const TransformerConfig& c, int64_t l) {
  const std::string h = fmt::format("transformer.h.{}.", l);
  const int64_t C = c.hidden_size;
  Layer out;
  out.ln1_w = hf.get(h + "ln_1.weight");
  out.ln1_b = hf.get(h + "ln_1.bias");
  const Tensor qkv_w = hf.get(h + "attn.c_attn.weight").transpose(0, 1).contiguous(), qkv_b = hf.get(h + "attn.c_attn.bias");
  out.q_w = rows(qkv_w, 0, C), out.k_w = rows(qkv_w, C, C), out.v_w = rows(qkv_w, 2 * C, C);
  out.q_b = rows(qkv_b, 0, C), out.k_b = rows(qkv_b, C, C), out.v_b = rows(qkv_b, 2 * C, C);
  out.dense_w = hf.get(h + "attn.c_proj.weight").transpose(0, 1).contiguous();
  out.dense_b = hf.get(h + "attn.c_proj.bias");
  out.ln2_w = hf.get(h + "ln_2.weight");
  out.ln2_b = hf.get(h + "ln_2.bias");
  out.fc_w = hf.get(h + "mlp.c_fc.weight").transpose(0, 1).contiguous();
  out.fc_b = hf.get(h + "mlp.c_fc.bias");
  out.proj_w = hf.get(h + "mlp.c_proj.weight").transpose(0, 1).contiguous();
  out.proj_b = hf.get(h + "mlp.c_proj.bias");
  return out;
}

Layer llama_layer(const HfTensors& hf, int64_t l) {
  const std::string h = fmt::format("model.layers.{}.", l);
  auto optional = [&](const std::string& name) { return hf.has(name) ? hf.get(name) : Tensor(); };
  Layer out;
  out.ln1_w = hf.get(h + "input_layernorm.weight");
  out.q_w = hf.get(h + "self_attn.q_proj.weight"), out.k_w = hf.get(h + "self_attn.k_proj.weight");
  out.v_w = hf.get(h + "self_attn.v_proj.weight");
  out.q_b = optional(h + "self_attn.q_proj.bias"), out.k_b = optional(h + "self_attn.k_proj.bias");
  out.v_b = optional(h + "self_attn.v_proj.bias");
  out.dense_w = hf.get(h + "self_attn.o_proj.weight");
  out.dense_b = optional(h + "self_attn.o_proj.bias");
  out.ln2_w = hf.get(h + "post_attention_layernorm.weight");
  out.fc_w = hf.get(h + "mlp.gate_proj.weight"), out.fc_b = optional(h + "mlp.gate_proj.bias");
  out.gate_w = hf.get(h + "mlp.up_proj.weight"), out.gate_b = optional(h + "mlp.up_proj.bias");
  out.proj_w = hf.get(h + "mlp.down_proj.weight"), out.proj_b = optional(h + "mlp.down_proj.bias");
  return out;
}

// Rank r's tensors of one layer under TensorRT-LLM's names.
void add_layer(NamedTensors& out, const Layer& layer, int64_t l, int r, int tp) {
  const std::string p = fmt::format("transformer.layers.{}.", l);
  auto add = [&](const std::string& name, const Tensor& t) {
    if (t.defined()) out.emplace_back(p + name, t);
  };
  add("input_layernorm.weight", layer.ln1_w);
  add("input_layernorm.bias", layer.ln1_b);
  add("attention.qkv.weight",
      cat({row_shard(layer.q_w, r, tp), row_shard(layer.k_w, r, tp), row_shard(layer.v_w, r, tp)}, 0));
  if (layer.q_b.defined())
    add("attention.qkv.bias",
        cat({row_shard(layer.q_b, r, tp), row_shard(layer.k_b, r, tp), row_shard(layer.v_b, r, tp)}, 0));
  add("attention.dense.weight", column_shard(layer.dense_w, r, tp));
  add("attention.dense.bias", layer.dense_b);
  add("post_layernorm.weight", layer.ln2_w);
  add("post_layernorm.bias", layer.ln2_b);
  add("mlp.fc.weight", row_shard(layer.fc_w, r, tp));
  if (layer.fc_b.defined()) add("mlp.fc.bias", row_shard(layer.fc_b, r, tp));
  if (layer.gate_w.defined()) add("mlp.gate.weight", row_shard(layer.gate_w, r, tp));
  if (layer.gate_b.defined()) add("mlp.gate.bias", row_shard(layer.gate_b, r, tp));
  add("mlp.proj.weight", column_shard(layer.proj_w, r, tp));
  add("mlp.proj.bias", layer.proj_b);
}

nlohmann::ordered_json config_json(const TransformerConfig& c, HfArchitecture arch, DType dtype, int tp) {
  const bool llama = arch == HfArchitecture::Llama;
  nlohmann::ordered_json json = {
      {"architecture", llama ? "LlamaForCausalLM" : "GPTForCausalLM"},
      {"dtype", trtllm_dtype(dtype)},
      {"logits_dtype", "float32"},
      {"vocab_size", c.vocab_size},
      {"max_position_embeddings", c.max_position_embeddings},
      {"hidden_size", c.hidden_size},
      {"num_hidden_layers", c.num_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_query_groups},
      {"head_size", c.head_dim()},
      {"hidden_act", llama ? "silu" : "gelu"},
      {"intermediate_size", c.ffn_hidden_size},
      {"norm_epsilon", c.norm_epsilon},
      {"position_embedding_type", llama ? "rope_gpt_neox" : "learned_absolute"},
      {"bias", c.add_bias_linear},
      {"share_embedding_table", false},
      {"use_parallel_embedding", false},
      {"embedding_sharding_dim", 0},
      {"mapping", {{"world_size", tp}, {"tp_size", tp}, {"pp_size", 1}}},
      {"quantization", {{"quant_algo", nullptr}, {"kv_cache_quant_algo", nullptr}}},
  };
  if (llama) {
    json["rotary_base"] = c.rotary_base;
    if (c.rope_scaling.factor > 0.0)
      json["rotary_scaling"] = {{"type", "llama3"},
                                {"factor", c.rope_scaling.factor},
                                {"low_freq_factor", c.rope_scaling.low_freq_factor},
                                {"high_freq_factor", c.rope_scaling.high_freq_factor},
                                {"original_max_position_embeddings", c.rope_scaling.original_max_position}};
  }
  return json;
}

}  // namespace

void export_trtllm(const ExportSource& source, const std::filesystem::path& output, const TrtllmExportOptions& options) {
  const TransformerConfig& c = source.config;
  const int tp = options.tp_size;
  TS_CHECK(options.dtype == DType::F32 || options.dtype == DType::F16 || options.dtype == DType::BF16,
           "export: --dtype ", dtype_name(options.dtype), " is not one the trtllm format takes (f32, f16, bf16)");
  TS_CHECK(tp >= 1 && c.num_attention_heads % tp == 0 && c.num_query_groups % tp == 0 && c.ffn_hidden_size % tp == 0,
           "export: --tp-size ", tp, " must divide the attention heads (", c.num_attention_heads, "), the kv heads (",
           c.num_query_groups, ") and the FFN width (", c.ffn_hidden_size, ")");
  const HfArchitecture arch = hf_architecture(c);
  HfTensors hf(to_hf_tensors(c, source.parameters));
  const bool llama = arch == HfArchitecture::Llama;
  const Tensor& embedding = hf.get(llama ? "model.embed_tokens.weight" : "transformer.wte.weight");
  // The output layer's rows padded to a multiple of tp with zeros, then split.
  const Tensor& head = hf.has("lm_head.weight") ? hf.get("lm_head.weight") : embedding;
  const int64_t padded = (c.vocab_size + tp - 1) / tp * tp;
  const Tensor lm_head = padded == c.vocab_size
                             ? head
                             : cat({head, Tensor::zeros({padded - c.vocab_size, c.hidden_size}, head.dtype())}, 0);
  std::filesystem::create_directories(output);
  {
    std::ofstream out(output / "config.json");
    out << config_json(c, arch, options.dtype, tp).dump(2) << "\n";
    TS_CHECK(out.good(), "export: writing ", (output / "config.json").string(), " failed");
  }
  std::vector<Layer> layers;
  for (int64_t l = 0; l < c.num_layers; ++l) layers.push_back(llama ? llama_layer(hf, l) : gpt2_layer(hf, c, l));
  std::optional<ByteProgress> progress;  // every rank file holds the same bytes: rank 0's x tp
  uint64_t done = 0;
  for (int r = 0; r < tp; ++r) {
    NamedTensors rank;
    rank.emplace_back("transformer.vocab_embedding.weight", embedding);
    if (!llama) rank.emplace_back("transformer.position_embedding.weight", hf.get("transformer.wpe.weight"));
    for (int64_t l = 0; l < c.num_layers; ++l) add_layer(rank, layers[size_t(l)], l, r, tp);
    rank.emplace_back("transformer.ln_f.weight", hf.get(llama ? "model.norm.weight" : "transformer.ln_f.weight"));
    if (!llama) rank.emplace_back("transformer.ln_f.bias", hf.get("transformer.ln_f.bias"));
    rank.emplace_back("lm_head.weight", row_shard(lm_head, r, tp));
    for (auto& named : rank) named.second = named.second.to(options.dtype).contiguous();
    const uint64_t bytes = safetensors_data_bytes(rank);
    if (!progress) progress.emplace("export trtllm " + output.string(), bytes * uint64_t(tp), options.progress);
    write_safetensors((output / fmt::format("rank{}.safetensors", r)).string(), rank);
    progress->update(done += bytes);
  }
  progress->finish();
}

}  // namespace tessera
