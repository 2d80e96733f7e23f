#include "launcher/dpo_trainer.h"

#include <fmt/format.h>

#include "launcher/checkpoint_argument.h"
#include "launcher/checkpoint_state.h"
#include "launcher/lora_run.h"
#include "models/lora.h"

namespace tessera {

std::unique_ptr<GptModel> load_preference_model(const TrainConfig& c, const std::string& checkpoint,
                                                const std::string& key) {
  const DType dtype = c.precision == Precision::FP32 ? DType::F32 : DType::BF16;
  auto model = std::make_unique<GptModel>(c.model, c.seed, ParamOptions{dtype, c.device});
  const LoadedCheckpoint loaded = load_checkpoint_argument(checkpoint, key);
  load_model_weights(loaded.checkpoint, loaded.path, *model);
  return model;
}

DpoTrainer::DpoTrainer(const PreferenceRunConfig& config, Log log, Communicator* dp)
    : PreferenceTrainer(config, std::move(log), dp) {
  const bool lora = c_.train.model.lora.enabled();
  if (lora) {
    const LoadedCheckpoint base = load_checkpoint_argument(c_.init_from, "dpo.init_from");
    const DType dtype = c_.train.precision == Precision::FP32 ? DType::F32 : DType::BF16;
    policy_ = load_lora_policy(c_.train.model, c_.train.seed, ParamOptions{dtype, c_.train.device},
                               base.checkpoint.model, base.path);
    reference_ = std::make_unique<DpoReference>(*policy_);
  } else {
    policy_ = load_preference_model(c_.train, c_.init_from, "dpo.init_from");
    reference_ =
        std::make_unique<DpoReference>(load_preference_model(c_.train, c_.reference_from, "dpo.reference_from"));
  }
  if (logs_) {
    log_(fmt::format("dpo: policy from {}{}, frozen reference {}; loss {}, beta {}, label smoothing {}", c_.init_from,
                     lora ? fmt::format(" plus LoRA adapters (rank {})", c_.train.model.lora.rank) : "",
                     lora ? "the same base with adapters off" : "from " + c_.reference_from, c_.dpo.ipo ? "ipo" : "dpo",
                     c_.dpo.beta, c_.dpo.label_smoothing));
  }
  build_optimizer();
  if (lora && logs_) {
    const LoraMemory memory = measure_lora_memory(*policy_, trainable_parameters(), adamw_state_bytes(optimizer()), 0);
    log_(memory.describe());
    log_(memory.describe_reference());
  }
}

std::vector<Tensor> DpoTrainer::trainable_parameters() const { return tessera::trainable_parameters(*policy_); }

PreferenceTrainer::PairOutputs DpoTrainer::forward_pairs(const PreferenceBatch& batch, Split split,
                                                         const std::vector<int64_t>& pair_indices) {
  const int64_t n = batch.pairs;
  const Tensor policy = response_log_probs(*policy_, batch);
  const auto [ref_chosen, ref_rejected] = reference_->log_probs(split == Split::kTrain ? 0 : 1, pair_indices, batch);
  const DpoResult r = dpo_loss(policy.narrow(0, 0, n), policy.narrow(0, n, n), ref_chosen, ref_rejected, c_.dpo);
  return {r.loss, r.chosen_rewards, r.rejected_rewards};
}

std::map<std::string, SavedParameter> DpoTrainer::checkpoint_parameters() const {
  std::map<std::string, SavedParameter> out;
  // A LoRA run saves its adapters alone: the base is dpo.init_from (the saved recipe's lora.base).
  const bool lora = policy_->config().lora.enabled();
  for (const auto& [name, value] : lora ? lora_state_dict(*policy_) : policy_->named_parameters()) {
    out[name] = {value.detach().to(DType::F32).to(Device::cpu()), value.dtype()};
  }
  return out;
}

}  // namespace tessera
