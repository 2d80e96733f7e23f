// GPT-2's forward as llama.cpp's CPU backend computes it, in plain loops from our parameters
// (models/gpt_model.h names; single rank, f32), for the GGUF test's f32 comparison. It differs
// from an exact GPT-2 in one place: ggml's GELU (GGML_GELU_FP16, the default in ggml-cpu's vec.h)
// reads a table, y = f16(gelu_tanh(f16(x))) for -10 < x < 10 (0 below, x above), which moves a
// trained model's logits by a few 1e-3 from ours. Everything else is the textbook computation
// (pre-LN blocks, causal softmax attention, learned positions), accumulated in double, and
// written independently of the export's conversions: our fused QKV rows are read in their own
// per-head [q, k, v] grouping.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "models/transformer_config.h"

namespace tessera::testing {

// ggml's table GELU for one value.
float ggml_table_gelu(float x);

// Logits over the real vocabulary [config.vocab_size] after the last of `ids`.
std::vector<float> ggml_gpt2_last_logits(const TransformerConfig& config,
                                         const std::map<std::string, Tensor>& parameters,
                                         const std::vector<int32_t>& ids);

}  // namespace tessera::testing
