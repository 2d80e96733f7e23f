#include "models/transformer_config.h"

#include <algorithm>
#include <functional>
#include <map>

#include "core/check.h"

namespace tessera {

int64_t TransformerConfig::padded_vocab_size(int64_t tp_size) const {
  TS_CHECK(tp_size >= 1, "padded_vocab_size: tp_size must be >= 1, got ", tp_size);
  int64_t multiple = std::max<int64_t>(1, make_vocab_size_divisible_by) * tp_size;
  return (vocab_size + multiple - 1) / multiple * multiple;
}

void TransformerConfig::validate() const {
  auto positive = [&](int64_t value, const char* key) {
    TS_CHECK(value > 0, "model.", key, " must be positive, got ", value, " (model ", name, ")");
  };
  positive(num_layers, "num_layers");
  positive(hidden_size, "hidden_size");
  positive(num_attention_heads, "num_attention_heads");
  positive(num_query_groups, "num_query_groups");
  positive(ffn_hidden_size, "ffn_hidden_size");
  positive(vocab_size, "vocab_size");
  positive(max_position_embeddings, "max_position_embeddings");
  TS_CHECK(hidden_size % num_attention_heads == 0, "model.hidden_size ", hidden_size,
           " is not divisible by model.num_attention_heads ", num_attention_heads);
  TS_CHECK(num_attention_heads % num_query_groups == 0, "model.num_attention_heads ", num_attention_heads,
           " is not divisible by model.num_query_groups ", num_query_groups);
  TS_CHECK(position_embedding != PositionEmbedding::Rope || head_dim() % 2 == 0, "rotary embeddings need an even head "
           "dim, got ", head_dim());
  TS_CHECK(hidden_dropout >= 0.0 && hidden_dropout < 1.0, "model.hidden_dropout ", hidden_dropout,
           " must be in [0, 1)");
  TS_CHECK(init_method_std > 0.0, "model.init_method_std must be positive, got ", init_method_std);
  lora.validate();
}

void LoraConfig::validate() const {
  TS_CHECK(rank >= 0, "lora.rank must be >= 0 (0 turns LoRA off), got ", rank);
  if (!enabled()) return;
  TS_CHECK(alpha > 0.0, "lora.alpha must be positive, got ", alpha);
  TS_CHECK(dropout >= 0.0 && dropout < 1.0, "lora.dropout ", dropout, " must be in [0, 1)");
  TS_CHECK(!targets.empty(), "lora.targets is empty; name some of linear_qkv, linear_proj, linear_fc1, linear_fc2");
  const std::vector<std::string> known = {"linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"};
  for (size_t i = 0; i < targets.size(); ++i) {
    TS_CHECK(std::find(known.begin(), known.end(), targets[i]) != known.end(), "lora.targets: unknown target '",
             targets[i], "'; the targets are linear_qkv, linear_proj, linear_fc1, linear_fc2");
    TS_CHECK(std::find(targets.begin(), targets.begin() + long(i), targets[i]) == targets.begin() + long(i),
             "lora.targets names '", targets[i], "' twice");
  }
}

int64_t TransformerConfig::parameter_count() const {
  int64_t c = hidden_size, d = head_dim(), f = ffn_hidden_size;
  int64_t qkv_out = (num_attention_heads + 2 * num_query_groups) * d;
  int64_t norm = normalization == Normalization::LayerNorm ? 2 * c : c;
  int64_t bias = add_bias_linear ? 1 : 0;
  int64_t fc1_out = activation == Activation::SwiGLU ? 2 * f : f;
  int64_t attention = c * qkv_out + bias * qkv_out + num_attention_heads * d * c + bias * c;
  int64_t mlp = c * fc1_out + bias * fc1_out + f * c + bias * c;
  int64_t layer = norm + attention + norm + mlp;
  int64_t embeddings = padded_vocab_size() * c;
  if (position_embedding == PositionEmbedding::Learned) embeddings += max_position_embeddings * c;
  int64_t head = tie_word_embeddings ? 0 : padded_vocab_size() * c;
  return embeddings + num_layers * layer + norm + head;
}

double TransformerConfig::training_flops_per_token(int64_t seq_len) const {
  double c = double(hidden_size), d = double(head_dim()), f = double(ffn_hidden_size);
  double qkv = c * double(num_attention_heads + 2 * num_query_groups) * d;
  double proj = double(num_attention_heads) * d * c;
  double mlp = c * f * (activation == Activation::SwiGLU ? 3.0 : 2.0);
  // Scores and the weighted sum: 2 matmuls of T x D per head per token, half of them masked.
  double attention = 2.0 * double(num_attention_heads) * d * double(seq_len) / 2.0;
  double forward = 2.0 * (double(num_layers) * (qkv + proj + mlp) + c * double(vocab_size)) +
                   2.0 * double(num_layers) * attention;
  return 3.0 * forward;
}

namespace {

TransformerConfig gpt2(const std::string& name, int64_t layers, int64_t hidden, int64_t heads) {
  TransformerConfig c;
  c.name = name;
  c.num_layers = layers;
  c.hidden_size = hidden;
  c.num_attention_heads = heads;
  c.num_query_groups = heads;
  c.ffn_hidden_size = 4 * hidden;
  c.vocab_size = 50257;
  c.max_position_embeddings = 1024;
  return c;
}

TransformerConfig llama(const std::string& name, int64_t layers, int64_t hidden, int64_t heads, int64_t groups,
                        int64_t ffn, bool tied) {
  TransformerConfig c;
  c.name = name;
  c.num_layers = layers;
  c.hidden_size = hidden;
  c.num_attention_heads = heads;
  c.num_query_groups = groups;
  c.ffn_hidden_size = ffn;
  c.vocab_size = 128256;
  c.max_position_embeddings = 131072;
  c.normalization = Normalization::RMSNorm;
  c.activation = Activation::SwiGLU;
  c.position_embedding = PositionEmbedding::Rope;
  c.norm_epsilon = 1e-5;
  c.rotary_base = 500000.0;
  c.rope_scaling = RopeScaling{32.0, 1.0, 4.0, 8192};
  c.add_bias_linear = false;
  c.tie_word_embeddings = tied;
  return c;
}

const std::map<std::string, std::function<TransformerConfig()>>& presets() {
  static const std::map<std::string, std::function<TransformerConfig()>> table = {
      {"gpt2-124m", [] { return gpt2("gpt2-124m", 12, 768, 12); }},
      {"gpt2-355m", [] { return gpt2("gpt2-355m", 24, 1024, 16); }},
      {"gpt2-774m", [] { return gpt2("gpt2-774m", 36, 1280, 20); }},
      {"gpt2-1.5b", [] { return gpt2("gpt2-1.5b", 48, 1600, 25); }},
      {"llama-tiny",
       [] {
         TransformerConfig c = llama("llama-tiny", 2, 64, 4, 2, 128, false);
         c.vocab_size = 512;
         c.max_position_embeddings = 256;
         c.rope_scaling = RopeScaling{};
         c.rotary_base = 10000.0;
         return c;
       }},
      {"llama3-1b", [] { return llama("llama3-1b", 16, 2048, 32, 8, 8192, true); }},
      {"llama3-3b", [] { return llama("llama3-3b", 28, 3072, 24, 8, 8192, true); }},
      // Llama 3.1 8B/70B scale rope by 8; Llama 3.2 1B/3B by 32.
      {"llama3-8b",
       [] {
         TransformerConfig c = llama("llama3-8b", 32, 4096, 32, 8, 14336, false);
         c.rope_scaling.factor = 8.0;
         return c;
       }},
      {"llama3-70b",
       [] {
         TransformerConfig c = llama("llama3-70b", 80, 8192, 64, 8, 28672, false);
         c.rope_scaling.factor = 8.0;
         return c;
       }},
  };
  return table;
}

}  // namespace

std::vector<std::string> transformer_preset_names() {
  std::vector<std::string> names;
  for (const auto& [name, make] : presets()) names.push_back(name);
  return names;
}

TransformerConfig transformer_preset(const std::string& name) {
  auto it = presets().find(name);
  if (it == presets().end()) {
    std::string known;
    for (const std::string& n : transformer_preset_names()) known += (known.empty() ? "" : ", ") + n;
    TS_CHECK(false, "unknown model preset '", name, "'; known presets: ", known);
  }
  return it->second();
}

}  // namespace tessera
