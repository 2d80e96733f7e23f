// LoRA on the transformer (TransformerConfig::lora, parallel/lora.h for the adapter itself).
// GptModel attaches one adapter per target linear of each of its layers and freezes every
// other parameter (requires_grad false: autograd gives them no gradient, so an optimizer or DDP
// built from trainable_parameters() holds no state and moves no bytes for them).
// Adapter parameter names extend the layer's (NeMo's):
//   decoder.layers.N.self_attention.linear_qkv.adapter.linear_in.weight   A [rank, C]
//   decoder.layers.N.self_attention.linear_qkv.adapter.linear_out.weight  B [(H + 2 KV) D / tp, rank]
// and likewise for linear_proj, mlp.linear_fc1, mlp.linear_fc2 (see lora.h for the tp splits).
// The adapters' A are drawn from their own stream (seed ^ kLoraSeedSalt, kLoraDrawsPerLayer draws
// per layer at offset layer * kLoraDrawsPerLayer), so a LoRA model's base weights are exactly the
// plain model's for the same seed, on any tp or pipeline layout.
// Model-wide switches work on any module tree (a whole model or a pipeline piece):
// set_lora_enabled / LoraDisabledScope (the frozen reference of DPO, PPO and GRPO is the same
// model with its adapters off: no second copy of the weights), merge_lora / unmerge_lora.
#pragma once

#include <cstdint>
#include <vector>

#include "core/nn/module.h"
#include "models/model_parallelism.h"
#include "models/transformer_config.h"
#include "parallel/lora.h"
#include "parallel/rng_tracker.h"

namespace tessera {

constexpr uint64_t kLoraSeedSalt = 0x4c6f5241ULL;  // "LoRA"
constexpr uint64_t kLoraDrawsPerLayer = 4;         // one per possible target

// Attaches adapters to the targets of transformer layer `layer_index` (a module with children
// self_attention.{linear_qkv, linear_proj} and mlp.{linear_fc1, linear_fc2}). Dropout draws from
// rng.default_generator() where the adapter's input is replicated over tp (column-parallel
// targets without sequence parallelism), from rng.fork() elsewhere. Returns the adapters'
// parameters that every tp rank holds whole (GptModel's replicated list).
std::vector<Tensor> attach_lora(Module& layer, int64_t layer_index, const LoraConfig& config, uint64_t seed,
                                RngTracker& rng, const ModelParallelism& parallel);

// Every adapter in the tree, in parameter order.
std::vector<LoraAdapter*> lora_adapters(const Module& model);
// requires_grad false for every parameter outside an adapter.
void freeze_base_parameters(const Module& model);
// The parameters with requires_grad (with LoRA: the adapters'), in parameter order; and a flag
// list aligned with parameters() (GptModel::parameter_is_tensor_parallel_sharded, ...) cut to them.
std::vector<Tensor> trainable_parameters(const Module& model);
std::vector<bool> trainable_subset(const Module& model, const std::vector<bool>& flags);

// The adapters' parameters alone, with their model names (saving adapters; this rank's shards
// under tp). load_lora_state_dict copies them back: every adapter key must be present and no
// other key may be given.
StateDict lora_state_dict(const Module& model);
void load_lora_state_dict(const Module& model, const StateDict& state);

void set_lora_enabled(const Module& model, bool enabled);
// Adapters off for a scope (a reference model's forward), back on at its end.
class LoraDisabledScope {
 public:
  explicit LoraDisabledScope(const Module& model);
  ~LoraDisabledScope();
  LoraDisabledScope(const LoraDisabledScope&) = delete;
  LoraDisabledScope& operator=(const LoraDisabledScope&) = delete;

 private:
  const Module& model_;
};

// W += scale * B A in every adapted layer (this rank's shards; no communication), then the
// adapters stop adding their term; unmerge_lora undoes it (equal up to rounding).
void merge_lora(const Module& model);
void unmerge_lora(const Module& model);

}  // namespace tessera
