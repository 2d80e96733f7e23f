// `tessera export --format gguf`: one GGUF v3 file (gguf_writer.h) in the llama.cpp architecture
// of the model's family (hf_format.h's hf_architecture), the tokenizer embedded as
// tokenizer.ggml.* (model "gpt2": byte-level BPE tokens, types and merges in GPT-2's alphabet;
// pre "gpt-2" or "llama-bpe" after the tokenizer's regex; no BOS added). Integers are u32,
// floats f32; vocabulary rows unpadded.
// `llama` (Llama family: RMSNorm, SwiGLU, rope, no biases):
//   metadata llama.{context_length, embedding_length, block_count, feed_forward_length,
//     rope.dimension_count, attention.head_count(_kv), rope.freq_base,
//     attention.layer_norm_rms_epsilon, vocab_size};
//   tensors token_embd, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm,
//     ffn_gate, ffn_up, ffn_down}, output_norm, output (untied only; llama.cpp reuses
//     token_embd otherwise), rope_freqs (Llama-3 rope scaling's per-frequency divisors);
//     q and k rows of each head permuted from our rotate-half pairs (i, i + D/2) to llama.cpp's
//     adjacent pairs (2i, 2i + 1), as convert_hf_to_gguf.py does.
// `gpt2` (GPT-2 family: LayerNorm, GELU, learned positions, biases, no GQA):
//   metadata gpt2.{context_length, embedding_length, block_count, feed_forward_length,
//     attention.head_count, attention.layer_norm_epsilon};
//   tensors token_embd, position_embd, blk.N.{attn_norm, attn_qkv, attn_output, ffn_norm,
//     ffn_up, ffn_down}.{weight, bias}, output_norm.{weight, bias}, output (untied only);
//     attn_qkv fused as [all Q; all K; all V] rows (ours are grouped per head), every matrix
//     [out, in] row-major (ggml {in, out}).
// Matrices take the requested type; norms, biases, rope_freqs and position_embd stay f32 (as
// llama.cpp's converter keeps them); a q8_0 matrix whose rows are not a multiple of 32 falls
// back to f16.
#pragma once

#include <cstdio>
#include <filesystem>

#include "launcher/export_source.h"
#include "launcher/export_tokenizer.h"
#include "launcher/gguf_writer.h"

namespace tessera {

// Writes `path` (a .gguf file).
void export_gguf(const ExportSource& source, const ExportTokenizer& tokenizer, const std::filesystem::path& path,
                 GgmlType type, std::FILE* progress = stderr);

// Rows [H D, C] of per-head rotate-half order -> llama.cpp's interleaved order (exposed for tests).
Tensor permute_rows_for_llama_cpp_rope(const Tensor& weight, int64_t heads);

}  // namespace tessera
