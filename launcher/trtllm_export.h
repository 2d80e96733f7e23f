// `tessera export --format trtllm`: TensorRT-LLM's checkpoint (its docs/source/architecture/
// checkpoint.md): a folder with
//   config.json: architecture (GPTForCausalLM or LlamaForCausalLM), dtype, logits_dtype,
//     vocab_size, max_position_embeddings, hidden_size, num_hidden_layers, num_attention_heads,
//     num_key_value_heads, head_size, hidden_act, intermediate_size, norm_epsilon,
//     position_embedding_type (learned_absolute or rope_gpt_neox: our rope rotates pairs
//     (i, i + D/2), transformers' rotate_half), rotary_base / rotary_scaling (Llama), bias,
//     mapping {world_size, tp_size, pp_size}, quantization {quant_algo: null};
//   rank{r}.safetensors for each tensor-parallel rank r < tp_size, weights as [out, in] with
//     TensorRT-LLM's names: transformer.vocab_embedding (whole on every rank),
//     transformer.position_embedding (GPT-2), transformer.layers.{i}.input_layernorm,
//     .attention.qkv (this rank's query heads, then its kv heads' keys, then values),
//     .attention.dense (this rank's input columns; bias whole), .post_layernorm, .mlp.fc (rows:
//     GELU's up projection, or SwiGLU's gate_proj), .mlp.gate (SwiGLU's up_proj, rows),
//     .mlp.proj (input columns; bias whole), transformer.ln_f, lm_head (vocabulary padded to a
//     multiple of tp_size with zero rows, split by rows).
// The tensors come from the Hugging Face layout (hf_format.h), so both exports agree by
// construction. The engine build (trtllm-build) is not run here.
#pragma once

#include <cstdio>
#include <filesystem>

#include "launcher/export_source.h"

namespace tessera {

struct TrtllmExportOptions {
  DType dtype = DType::F32;  // f32, f16 or bf16
  int tp_size = 1;           // rank files written; must divide the heads, kv heads and FFN width
  std::FILE* progress = stderr;
};

void export_trtllm(const ExportSource& source, const std::filesystem::path& output, const TrtllmExportOptions& options);

}  // namespace tessera
