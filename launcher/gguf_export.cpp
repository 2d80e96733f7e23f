#include "launcher/gguf_export.h"

#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <map>
#include <numbers>

#include "core/check.h"
#include "data/bpe_byte_unicode.h"
#include "data/bpe_pretokenizer.h"
#include "launcher/export_progress.h"
#include "launcher/hf_format.h"

namespace tessera {
namespace {

// Adds a weight matrix in the export's type.
using MatrixAdder = std::function<void(const std::string& name, const Tensor& value)>;

// llama.cpp's token types (llama_token_type) and file types (llama_ftype).
constexpr int32_t kTokenNormal = 1, kTokenControl = 3, kTokenUnused = 5;

uint32_t file_type(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
      return 0;
    case GgmlType::F16:
      return 1;
    case GgmlType::Q8_0:
      return 7;
    case GgmlType::BF16:
      return 32;
  }
  return 0;
}

uint32_t u32(int64_t value, const char* what) {
  TS_CHECK(value >= 0 && value <= int64_t(UINT32_MAX), "export: ", what, " = ", value, " does not fit GGUF's u32");
  return uint32_t(value);
}

// llama.cpp's pre-tokenizer name for the tokenizer's regex.
std::string pre_tokenizer(const std::string& pattern) {
  if (pattern == kGpt2Pattern) return "gpt-2";
  if (pattern == kLlama3Pattern) return "llama-bpe";
  TS_CHECK(false,
           "export: the tokenizer's pre-tokenization regex is neither GPT-2's nor Llama 3's; llama.cpp "
           "names pre-tokenizers, so GGUF export supports only those two");
  return "";
}

// convert_hf_to_gguf.py's Llama-3 rope factors: 1 for short wavelengths, `factor` for long ones,
// a smooth blend between.
Tensor llama3_rope_factors(const TransformerConfig& c) {
  const RopeScaling& s = c.rope_scaling;
  const int64_t D = c.head_dim();
  const double low_wavelen = double(s.original_max_position) / s.low_freq_factor;
  const double high_wavelen = double(s.original_max_position) / s.high_freq_factor;
  std::vector<float> factors;
  for (int64_t i = 0; i < D; i += 2) {
    const double freq = 1.0 / std::pow(c.rotary_base, double(i) / double(D));
    const double wavelen = 2.0 * std::numbers::pi / freq;
    if (wavelen < high_wavelen) {
      factors.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      factors.push_back(float(s.factor));
    } else {
      const double smooth =
          (double(s.original_max_position) / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      factors.push_back(float(1.0 / ((1.0 - smooth) / s.factor + smooth)));
    }
  }
  return Tensor::from_vector(factors, {D / 2});
}

void add_tokenizer(GgufWriter& gguf, const ExportTokenizer& tokenizer, int64_t vocab_size) {
  TS_CHECK(tokenizer.vocab_size <= vocab_size, "export: the tokenizer's ", tokenizer.vocab_size,
           " tokens do not fit the model's vocabulary of ", vocab_size, " (a tokenizer other than training's?)");
  const TokenTable table = token_table(tokenizer);
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  for (int64_t id = 0; id < vocab_size; ++id) {
    const bool present = id < tokenizer.vocab_size && table.present[size_t(id)];
    // Ids no token has (the model's vocabulary beyond the tokenizer's) still need a unique entry.
    tokens.push_back(present ? table.text[size_t(id)] : fmt::format("<|tessera_unused_{}|>", id));
    types.push_back(!present ? kTokenUnused : table.special[size_t(id)] ? kTokenControl : kTokenNormal);
  }
  std::vector<std::string> merges;
  for (const auto& [left, right] : tokenizer.spec.merges)
    merges.push_back(bytes_to_unicode_text(left) + " " + bytes_to_unicode_text(right));
  gguf.add_string("tokenizer.ggml.model", "gpt2");
  gguf.add_string("tokenizer.ggml.pre", pre_tokenizer(tokenizer.spec.pattern));
  gguf.add_string_array("tokenizer.ggml.tokens", tokens);
  gguf.add_int32_array("tokenizer.ggml.token_type", types);
  gguf.add_string_array("tokenizer.ggml.merges", merges);
  if (tokenizer.eos >= 0) {
    gguf.add_uint32("tokenizer.ggml.eos_token_id", uint32_t(tokenizer.eos));
    gguf.add_uint32("tokenizer.ggml.bos_token_id", uint32_t(tokenizer.bos));
  }
  // Tessera's generate adds no BOS; neither should llama.cpp.
  gguf.add_bool("tokenizer.ggml.add_bos_token", false);
  gguf.add_bool("tokenizer.ggml.add_eos_token", false);
}

// The key prefix and tensors of llama.cpp's `llama` architecture, from transformers' layout (the
// Llama conversion is exact), renamed and q/k permuted.
void add_llama(GgufWriter& gguf, const TransformerConfig& c, const std::map<std::string, Tensor>& hf,
               const MatrixAdder& matrix) {
  TS_CHECK(!c.add_bias_linear, "export: --format gguf: model ", c.name,
           " has linear biases, which llama.cpp's llama architecture does not load");
  gguf.add_uint32("llama.vocab_size", u32(c.vocab_size, "vocab_size"));
  gguf.add_uint32("llama.context_length", u32(c.max_position_embeddings, "max_position_embeddings"));
  gguf.add_uint32("llama.embedding_length", u32(c.hidden_size, "hidden_size"));
  gguf.add_uint32("llama.block_count", u32(c.num_layers, "num_layers"));
  gguf.add_uint32("llama.feed_forward_length", u32(c.ffn_hidden_size, "ffn_hidden_size"));
  gguf.add_uint32("llama.rope.dimension_count", u32(c.head_dim(), "head_dim"));
  gguf.add_uint32("llama.attention.head_count", u32(c.num_attention_heads, "num_attention_heads"));
  gguf.add_uint32("llama.attention.head_count_kv", u32(c.num_query_groups, "num_query_groups"));
  gguf.add_float32("llama.rope.freq_base", float(c.rotary_base));
  gguf.add_float32("llama.attention.layer_norm_rms_epsilon", float(c.norm_epsilon));
  matrix("token_embd.weight", hf.at("model.embed_tokens.weight"));
  if (c.rope_scaling.factor != 0.0) gguf.add_tensor("rope_freqs.weight", llama3_rope_factors(c), GgmlType::F32);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string h = fmt::format("model.layers.{}.", l), b = fmt::format("blk.{}.", l);
    gguf.add_tensor(b + "attn_norm.weight", hf.at(h + "input_layernorm.weight"), GgmlType::F32);
    matrix(b + "attn_q.weight",
           permute_rows_for_llama_cpp_rope(hf.at(h + "self_attn.q_proj.weight"), c.num_attention_heads));
    matrix(b + "attn_k.weight",
           permute_rows_for_llama_cpp_rope(hf.at(h + "self_attn.k_proj.weight"), c.num_query_groups));
    matrix(b + "attn_v.weight", hf.at(h + "self_attn.v_proj.weight"));
    matrix(b + "attn_output.weight", hf.at(h + "self_attn.o_proj.weight"));
    gguf.add_tensor(b + "ffn_norm.weight", hf.at(h + "post_attention_layernorm.weight"), GgmlType::F32);
    matrix(b + "ffn_gate.weight", hf.at(h + "mlp.gate_proj.weight"));
    matrix(b + "ffn_up.weight", hf.at(h + "mlp.up_proj.weight"));
    matrix(b + "ffn_down.weight", hf.at(h + "mlp.down_proj.weight"));
  }
  gguf.add_tensor("output_norm.weight", hf.at("model.norm.weight"), GgmlType::F32);
  if (!c.tie_word_embeddings) matrix("output.weight", hf.at("lm_head.weight"));
}

// llama.cpp's `gpt2` architecture, from transformers' GPT2LMHeadModel layout as
// convert_hf_to_gguf.py's GPT2Model does: Conv1D weights ([in, out]) transposed back to [out, in],
// c_attn already [Q; K; V] (hf_format.h regrouped our per-head rows); biases, norms and the
// position table stay f32.
void add_gpt2(GgufWriter& gguf, const TransformerConfig& c, const std::map<std::string, Tensor>& hf,
              const MatrixAdder& matrix) {
  gguf.add_uint32("gpt2.context_length", u32(c.max_position_embeddings, "max_position_embeddings"));
  gguf.add_uint32("gpt2.embedding_length", u32(c.hidden_size, "hidden_size"));
  gguf.add_uint32("gpt2.block_count", u32(c.num_layers, "num_layers"));
  gguf.add_uint32("gpt2.feed_forward_length", u32(c.ffn_hidden_size, "ffn_hidden_size"));
  gguf.add_uint32("gpt2.attention.head_count", u32(c.num_attention_heads, "num_attention_heads"));
  gguf.add_float32("gpt2.attention.layer_norm_epsilon", float(c.norm_epsilon));
  auto f32 = [&](const std::string& name, const std::string& hf_name) {
    gguf.add_tensor(name, hf.at(hf_name), GgmlType::F32);
  };
  auto conv1d = [&](const std::string& name, const std::string& hf_name) {
    matrix(name, hf.at(hf_name).transpose(0, 1).contiguous());
  };
  matrix("token_embd.weight", hf.at("transformer.wte.weight"));
  f32("position_embd.weight", "transformer.wpe.weight");
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string h = fmt::format("transformer.h.{}.", l), b = fmt::format("blk.{}.", l);
    f32(b + "attn_norm.weight", h + "ln_1.weight");
    f32(b + "attn_norm.bias", h + "ln_1.bias");
    conv1d(b + "attn_qkv.weight", h + "attn.c_attn.weight");
    f32(b + "attn_qkv.bias", h + "attn.c_attn.bias");
    conv1d(b + "attn_output.weight", h + "attn.c_proj.weight");
    f32(b + "attn_output.bias", h + "attn.c_proj.bias");
    f32(b + "ffn_norm.weight", h + "ln_2.weight");
    f32(b + "ffn_norm.bias", h + "ln_2.bias");
    conv1d(b + "ffn_up.weight", h + "mlp.c_fc.weight");
    f32(b + "ffn_up.bias", h + "mlp.c_fc.bias");
    conv1d(b + "ffn_down.weight", h + "mlp.c_proj.weight");
    f32(b + "ffn_down.bias", h + "mlp.c_proj.bias");
  }
  f32("output_norm.weight", "transformer.ln_f.weight");
  f32("output_norm.bias", "transformer.ln_f.bias");
  if (!c.tie_word_embeddings) matrix("output.weight", hf.at("lm_head.weight"));
}

}  // namespace

Tensor permute_rows_for_llama_cpp_rope(const Tensor& weight, int64_t heads) {
  const int64_t rows = weight.size(0), D = rows / heads;
  const Shape tail(weight.shape().begin() + 1, weight.shape().end());
  const int64_t width = weight.numel() / rows;
  // [heads, 2, D/2, width] -> [heads, D/2, 2, width]: row h D + 2i + s <- row h D + s D/2 + i.
  Tensor permuted = weight.reshape({heads, 2, D / 2, width}).transpose(1, 2).contiguous();
  Shape shape{rows};
  shape.insert(shape.end(), tail.begin(), tail.end());
  return permuted.reshape(shape);
}

void export_gguf(const ExportSource& source, const ExportTokenizer& tokenizer, const std::filesystem::path& path,
                 GgmlType type, std::FILE* progress) {
  const TransformerConfig& c = source.config;
  const bool gpt2 = hf_architecture(c) == HfArchitecture::Gpt2;
  GgufWriter gguf;
  gguf.add_string("general.architecture", gpt2 ? "gpt2" : "llama");
  gguf.add_string("general.name", c.name);
  gguf.add_uint32("general.file_type", file_type(type));
  if (type == GgmlType::Q8_0) gguf.add_uint32("general.quantization_version", 2);
  // Matrices take the requested type; q8_0 falls back to f16 where rows are not whole blocks.
  const MatrixAdder matrix = [&](const std::string& name, const Tensor& value) {
    const bool q8_fits = value.size(1) % kQ8BlockSize == 0;
    gguf.add_tensor(name, value, type == GgmlType::Q8_0 && !q8_fits ? GgmlType::F16 : type);
  };
  const NamedTensors hf = to_hf_tensors(c, source.parameters);
  const std::map<std::string, Tensor> by_name(hf.begin(), hf.end());
  if (gpt2) {
    add_gpt2(gguf, c, by_name, matrix);
  } else {
    add_llama(gguf, c, by_name, matrix);
  }
  add_tokenizer(gguf, tokenizer, c.vocab_size);

  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  ByteProgress meter("export gguf " + path.string(), gguf.tensor_data_bytes(), progress);
  gguf.write(path.string(), [&](uint64_t written) { meter.update(written); });
  meter.finish();
}

}  // namespace tessera
