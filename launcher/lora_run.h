// What the trainer adds for a LoRA run (model.lora.rank > 0, docs/lora.md): the frozen base
// weights loaded from a checkpoint of the plain model (lora.base), and the memory report that
// shows where the training state lives.
// - load_lora_base: every base parameter of `model` (this rank's tensor-parallel shard) is read
//   from a checkpoint (a committed folder of any layout, a single-rank .h5 file as `tessera import`
//   writes, or a directory's newest: launcher/checkpoint_argument.h) (assembled whole on the host, then cut to
//   this rank's shard as Megatron splits it); the adapters keep their fresh values (B = 0, so the
//   run starts from the base model's logits). The checkpoint must hold exactly the model's base
//   parameters, by name and global shape; a difference is an error naming the tensor.
// - load_lora_policy: the LoRA policy of DPO and GRPO (a fresh LoRA model, its base loaded from
//   the run's init_from); their frozen reference is that model with its adapters off.
// - LoraMemory: parameters, gradients and optimizer state counted from the live tensors, split
//   into trainable (the adapters) and frozen (the base); frozen parameters hold no gradient and
//   no optimizer state, which the line shows as measured bytes.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "launcher/checkpoint.h"
#include "models/gpt_model.h"
#include "optim/adamw.h"

namespace tessera {

void load_lora_base(const std::string& source, GptModel& model);
// The same from a checkpoint's tensors already read (`source` names it in errors).
void load_lora_base(const std::map<std::string, SavedParameter>& saved, const std::string& source, GptModel& model);
// A model of `config` (config.lora enabled; the adapters drawn from `seed`) whose base holds
// `saved`'s weights.
std::unique_ptr<GptModel> load_lora_policy(const TransformerConfig& config, uint64_t seed, const ParamOptions& options,
                                           const std::map<std::string, SavedParameter>& saved,
                                           const std::string& source);

struct LoraMemory {
  int64_t trainable_parameters = 0, frozen_parameters = 0;  // elements
  size_t trainable_weight_bytes = 0, frozen_weight_bytes = 0;
  size_t trainable_grad_bytes = 0, frozen_grad_bytes = 0;  // .grad tensors the parameters hold
  size_t frozen_optimizer_bytes = 0;                       // state an optimizer holds for a frozen parameter
  size_t optimizer_state_bytes = 0;                        // the whole optimizer's (given)
  std::string describe() const;                            // the trainer's one log line
  // DPO's and GRPO's reference line: the reference is this model with its adapters off, so it
  // adds nothing; a frozen copy (what runs without LoRA hold) would add the base's weights.
  std::string describe_reference() const;
};

// `optimized`: the optimizer's parameters; `optimizer_state_bytes`: its state (master, moments);
// `grad_buffer_bytes`: gradient memory held outside the parameters' .grad (DDP's buffer, a ZeRO
// shard), counted as trainable since only trainable parameters are given to DDP.
LoraMemory measure_lora_memory(const Module& model, const std::vector<Tensor>& optimized, size_t optimizer_state_bytes,
                               size_t grad_buffer_bytes);
// AdamW's state as held: both moments, plus the f32 master of each 16-bit parameter.
size_t adamw_state_bytes(const AdamW& optimizer);

}  // namespace tessera
