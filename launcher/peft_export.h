// `tessera export --format peft`: a LoRA run's adapters as a Hugging Face PEFT adapter folder,
// loadable with PeftModel.from_pretrained(base, folder) over the transformers export of the base
// (hf_format.h):
//   adapter_config.json        peft_type LORA, r, lora_alpha, lora_dropout, target_modules (PEFT's
//                              module names), fan_in_fan_out (true for GPT-2's Conv1D layers)
//   adapter_model.safetensors  base_model.model.<transformers module>.lora_A.weight [r, in] and
//                              .lora_B.weight [out, r]
// Each of our adapters maps exactly (docs/lora.md, "As a PEFT adapter"): A is lora_A; B's rows are
// output rows of the base weight, so they take the weight's export mapping. Our fused linear_qkv
// becomes GPT-2's c_attn (B's rows reordered from our per-group [q, k, v] to [Q; K; V]) or Llama's
// q_proj, k_proj, v_proj (each with lora_A = A and its rows of B); SwiGLU's fc1 becomes gate_proj and
// up_proj likewise. Splitting a fused adapter is exact: each part's B_part A is the fused delta's rows.
#pragma once

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "launcher/safetensors.h"
#include "models/transformer_config.h"

namespace tessera {

// Our single-rank adapter tensors by name (host; as a LoRA checkpoint assembles) -> PEFT's, in
// layer order. Throws naming a missing or misshapen adapter tensor.
NamedTensors to_peft_tensors(const TransformerConfig& config, const std::map<std::string, Tensor>& adapters);

// adapter_config.json for `config` (config.lora enabled).
nlohmann::ordered_json peft_adapter_config(const TransformerConfig& config);

// Reads a LoRA run's checkpoint (any form launcher/checkpoint_argument.h takes) and writes the
// adapter folder `output` in `dtype` (f32, f16 or bf16). Throws for a checkpoint of a run without LoRA.
void export_peft(const std::string& checkpoint, const std::filesystem::path& output, DType dtype);

}  // namespace tessera
