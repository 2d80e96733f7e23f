// Shape and flavour of a decoder-only transformer, with Megatron's option names, and the
// published presets. One config covers both families:
//   GPT-2:  LayerNorm, GELU MLP, learned positions, biases, tied embeddings.
//   Llama:  RMSNorm, SwiGLU MLP, rotary positions (Llama-3 scaling), grouped-query attention,
//           no biases, untied embeddings (Llama-3.2 1B/3B tie them, as published).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/ops/nn.h"

namespace tessera {

enum class Normalization : uint8_t { LayerNorm, RMSNorm };
enum class Activation : uint8_t { Gelu, SwiGLU };
enum class PositionEmbedding : uint8_t { Learned, Rope };

// LoRA fine-tuning (models/lora.h; NeMo's peft options). rank 0: no adapters. With adapters
// every base parameter is frozen (requires_grad false) and only the adapters train.
struct LoraConfig {
  int64_t rank = 0;      // NeMo's "dim"; 0 turns LoRA off
  double alpha = 32.0;   // the adapters' term is scaled by alpha / rank
  double dropout = 0.0;  // on each adapter's input
  // Any of linear_qkv (the fused q/k/v projection: one adapter), linear_proj, linear_fc1 (SwiGLU:
  // gate and up together), linear_fc2. NeMo's default: all four.
  std::vector<std::string> targets = {"linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"};

  bool enabled() const { return rank > 0; }
  // Throws naming the first bad field (negative rank, unknown target with the known ones, ...).
  void validate() const;
};

struct TransformerConfig {
  std::string name;
  int64_t num_layers = 0;
  int64_t hidden_size = 0;
  int64_t num_attention_heads = 0;
  int64_t num_query_groups = 0;  // key/value heads; == num_attention_heads without GQA
  int64_t ffn_hidden_size = 0;
  int64_t vocab_size = 0;                       // the tokenizer's
  int64_t make_vocab_size_divisible_by = 128;  // the embedding table is padded to this
  int64_t max_position_embeddings = 0;         // longest sequence (learned positions' table)
  Normalization normalization = Normalization::LayerNorm;
  double norm_epsilon = 1e-5;
  Activation activation = Activation::Gelu;
  PositionEmbedding position_embedding = PositionEmbedding::Learned;
  double rotary_base = 10000.0;
  RopeScaling rope_scaling;
  bool add_bias_linear = true;
  bool tie_word_embeddings = true;
  double init_method_std = 0.02;
  double hidden_dropout = 0.0;
  LoraConfig lora;  // off by default

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  // The vocabulary padded to a multiple of make_vocab_size_divisible_by x tp_size (Megatron's
  // rule, so that every tensor-parallel rank holds an equal shard).
  int64_t padded_vocab_size(int64_t tp_size = 1) const;
  // Throws naming the first inconsistent field (heads that do not divide, ...).
  void validate() const;
  // Parameters of the model built from this config (padded vocab included).
  int64_t parameter_count() const;
  // Training FLOPs per token (forward + backward = 3x forward), counting matmuls and
  // attention scores (causal: half), as in docs/flops.md.
  double training_flops_per_token(int64_t seq_len) const;
};

// "gpt2-124m", "gpt2-355m", "gpt2-774m", "gpt2-1.5b", "llama-tiny", "llama3-1b", "llama3-3b",
// "llama3-8b", "llama3-70b". Unknown names list the known ones.
TransformerConfig transformer_preset(const std::string& name);
std::vector<std::string> transformer_preset_names();

}  // namespace tessera
