// Hugging Face transformers' layouts of our models: GPT2LMHeadModel for the GPT-2 family
// (LayerNorm, GELU-tanh, learned positions, biases) and LlamaForCausalLM for the Llama family
// (RMSNorm, SwiGLU, rotary positions). Other combinations have no transformers class and are
// refused. The conversions (models/gpt_model.h names the parameters) are exact reshuffles:
//   - vocabulary tables lose (export) or regain as zeros (import) the padded rows;
//   - our QKV rows, grouped per key/value head (its queries, its key, its value), become
//     GPT-2's fused c_attn [Q all heads; K; V] or Llama's separate q/k/v_proj;
//   - GPT-2's Conv1D layers (c_attn, c_proj, c_fc) store weight^T ([in, out]);
//   - SwiGLU's fc1 [gate; up] becomes gate_proj and up_proj;
//   - rotary rows need no permutation: our rope rotates pairs (i, i + D/2), transformers'
//     rotate_half convention (core/cpu/rope.cpp).
// Tensors keep their dtype through the conversion; they must be on the host.
#pragma once

#include <array>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "launcher/safetensors.h"
#include "models/transformer_config.h"

namespace tessera {

enum class HfArchitecture { Gpt2, Llama };

// Throws naming the field that has no transformers equivalent (GQA in a GPT-2 model, ...).
HfArchitecture hf_architecture(const TransformerConfig& config);

// Our single-rank parameters by name (padded vocabulary) -> transformers' tensors, in the
// order transformers lists them. Throws naming a missing or misshapen parameter.
// Our grouped QKV rows [(H + 2 KV) D, ...] (per group its query heads, its key, its value) ->
// {Q [H D, ...], K [KV D, ...], V [KV D, ...]}, heads in order.
std::array<Tensor, 3> split_grouped_qkv(const TransformerConfig& config, const Tensor& qkv);

NamedTensors to_hf_tensors(const TransformerConfig& config, const std::map<std::string, Tensor>& ours);
// The inverse; `source` names the files in errors. Unused extra tensors (GPT-2's attn.bias
// masks, a tied lm_head copy) are ignored; a missing or misshapen one throws naming it.
std::map<std::string, Tensor> from_hf_tensors(const TransformerConfig& config, const std::map<std::string, Tensor>& hf,
                                              const std::string& source);

// Token ids config.json and generation_config.json name (-1: none).
struct HfSpecialIds {
  int64_t bos = -1;
  int64_t eos = -1;
};
// config.json of the model; `torch_dtype` as transformers spells it ("float32", "bfloat16", ...).
nlohmann::ordered_json hf_config_json(const TransformerConfig& config, const HfSpecialIds& ids,
                                      const std::string& torch_dtype);
nlohmann::ordered_json hf_generation_config_json(const HfSpecialIds& ids);
// A config.json of GPT2LMHeadModel / LlamaForCausalLM -> our config (name "hf-gpt2" or
// "hf-llama"); throws naming the file and the key it cannot take.
TransformerConfig config_from_hf_json(const nlohmann::json& json, const std::string& source);

}  // namespace tessera
