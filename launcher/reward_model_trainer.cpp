#include "launcher/reward_model_trainer.h"

#include <fmt/format.h>

#include "core/autograd/grad_mode.h"
#include "launcher/checkpoint_argument.h"
#include "launcher/checkpoint_state.h"
#include "launcher/recipe.h"

namespace tessera {

std::unique_ptr<RewardModel> load_reward_model(const std::string& checkpoint, Device device, DType dtype) {
  const LoadedCheckpoint loaded = load_checkpoint_argument(checkpoint, "reward model");
  const Recipe recipe = Recipe::parse(loaded.checkpoint.config_yaml, loaded.path + " (saved configuration)");
  auto model = std::make_unique<RewardModel>(model_config_from_recipe(recipe), /*seed=*/0, ParamOptions{dtype, device});
  const auto parameters = model->named_parameters();
  TS_CHECK(loaded.checkpoint.model.size() == parameters.size() && loaded.checkpoint.model.count("score.weight") > 0,
           loaded.path, ": not a reward model checkpoint (it has ", loaded.checkpoint.model.size(),
           " parameters, a reward model of its configuration ", parameters.size(),
           " with score.weight); write one with `tessera reward-model`");
  NoGradGuard no_grad;
  for (const auto& [name, parameter] : parameters) {
    auto saved = loaded.checkpoint.model.find(name);
    TS_CHECK(saved != loaded.checkpoint.model.end(), loaded.path, ": the reward model checkpoint has no ", name);
    TS_CHECK(saved->second.value.shape() == parameter.shape(), loaded.path, ": ", name, " has shape ",
             saved->second.value.shape(), " in the checkpoint but ", parameter.shape(), " in the model");
    Tensor target = parameter;
    target.copy_(saved->second.value);
  }
  return model;
}

RewardModelTrainer::RewardModelTrainer(const PreferenceRunConfig& config, Log log, Communicator* dp)
    : PreferenceTrainer(config, std::move(log), dp) {
  const DType dtype = c_.train.precision == Precision::FP32 ? DType::F32 : DType::BF16;
  model_ = std::make_unique<RewardModel>(c_.train.model, c_.train.seed, ParamOptions{dtype, c_.train.device});
  if (!c_.init_from.empty()) {
    const LoadedCheckpoint loaded = load_checkpoint_argument(c_.init_from, "reward_model.init_from");
    load_model_weights(loaded.checkpoint, loaded.path, model_->backbone());
  }
  if (logs_) {
    log_(fmt::format("reward model: backbone from {}, a fresh scalar head (score.weight [1, {}]); Bradley-Terry loss",
                     c_.init_from.empty() ? "random weights (train.seed)" : c_.init_from, c_.train.model.hidden_size));
  }
  build_optimizer();
}

PreferenceTrainer::PairOutputs RewardModelTrainer::forward_pairs(const PreferenceBatch& batch, Split,
                                                                 const std::vector<int64_t>&) {
  const int64_t n = batch.pairs;
  const Tensor rewards = model_->rewards(batch.tokens, batch.lengths).to(DType::F32);
  const Tensor chosen = rewards.narrow(0, 0, n), rejected = rewards.narrow(0, n, n);
  const BradleyTerryResult r = bradley_terry_loss(chosen, rejected);
  return {r.loss, chosen.detach(), rejected.detach()};
}

std::map<std::string, SavedParameter> RewardModelTrainer::checkpoint_parameters() const {
  std::map<std::string, SavedParameter> out;
  for (const auto& [name, value] : model_->named_parameters()) {
    out[name] = {value.detach().to(DType::F32).to(Device::cpu()), value.dtype()};
  }
  return out;
}

}  // namespace tessera
