#include "launcher/rollout_policy.h"

#include "launcher/checkpoint_state.h"
#include "launcher/lora_run.h"
#include "launcher/recipe.h"
#include "models/lora.h"

namespace tessera {

RolloutPolicy load_rollout_policy(const RolloutRunConfig& config, const LoadedCheckpoint& loaded, uint64_t seed,
                                  bool with_reference) {
  RolloutPolicy policy;
  policy.lora = config.model.lora.enabled();
  const ParamOptions options{config.dtype, config.device};
  if (policy.lora) {
    policy.model = load_lora_policy(config.model, seed, options, loaded.checkpoint.model, loaded.path);
  } else {
    policy.model = std::make_unique<GptModel>(config.model, /*seed=*/0, options);
    load_model_weights(loaded.checkpoint, loaded.path, *policy.model);
  }
  if (with_reference && policy.lora) policy.reference = std::make_unique<LoraBaseReference>(*policy.model);
  if (with_reference && !policy.lora) policy.reference = std::make_unique<FrozenCopyReference>(*policy.model);
  return policy;
}

TrainingCheckpoint rollout_policy_checkpoint(const RolloutPolicy& policy, const LoadedCheckpoint& loaded,
                                             const std::string& resolved_yaml, int64_t step) {
  TrainingCheckpoint checkpoint;
  checkpoint.config_yaml = policy.lora
                               ? Recipe::parse(resolved_yaml, "saved recipe", {"lora.base=" + loaded.path}).resolved_yaml()
                               : resolved_yaml;
  checkpoint.step = step;
  for (const auto& [name, value] : policy.lora ? lora_state_dict(*policy.model) : policy.model->named_parameters())
    checkpoint.model[name] = SavedParameter{value.detach().to(Device::cpu()).to(DType::F32), value.dtype()};
  return checkpoint;
}

}  // namespace tessera
