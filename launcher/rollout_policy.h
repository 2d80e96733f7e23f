// The trained policy of `tessera grpo` and `tessera ppo`, from SECTION.init_from's checkpoint:
//   - without LoRA, that model, and as the KL reference a frozen copy of it;
//   - with a lora: section, that model frozen plus fresh adapters (from train.seed), and as the
//     reference the same model with its adapters off (no copy of the weights).
// The reference is null when the KL coefficient is 0. rollout_policy_checkpoint() saves the
// whole model, or with LoRA the adapters alone under a recipe whose lora.base names the base
// checkpoint, which `tessera export` merges them into.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "launcher/checkpoint_directory.h"
#include "launcher/checkpoint_state.h"
#include "launcher/grpo_trainer.h"
#include "launcher/rollout_recipe.h"
#include "models/gpt_model.h"

namespace tessera {

struct RolloutPolicy {
  std::unique_ptr<GptModel> model;
  std::unique_ptr<ReferencePolicy> reference;  // null without a KL term
  bool lora = false;
};

RolloutPolicy load_rollout_policy(const RolloutRunConfig& config, const LoadedCheckpoint& loaded, uint64_t seed,
                                  bool with_reference);

TrainingCheckpoint rollout_policy_checkpoint(const RolloutPolicy& policy, const LoadedCheckpoint& loaded,
                                             const std::string& resolved_yaml, int64_t step);

}  // namespace tessera
