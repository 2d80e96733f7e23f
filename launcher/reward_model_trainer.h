// Reward model training on preference pairs, `tessera reward-model` (docs/dpo.md): a RewardModel
// (posttrain/reward_model.h: the recipe's GptModel with a scalar head on the last real token)
// whose backbone starts from reward_model.init_from (e.g. an SFT checkpoint; empty: random weights
// from train.seed) and whose head starts fresh. Each micro-batch scores its chosen and rejected
// rows in one forward ([2n, T]) and takes posttrain's Bradley-Terry loss; accuracy is the share
// of pairs scored chosen > rejected. The loop, data parallelism, evaluation and checkpoints are
// PreferenceTrainer's; checkpoints hold the backbone's names plus score.weight, which
// load_reward_model reads back (for PPO/GRPO's reward, or checks).
#pragma once

#include <memory>
#include <string>

#include "launcher/preference_trainer.h"
#include "posttrain/reward_model.h"

namespace tessera {

// A reward model saved by `tessera reward-model` (a checkpoint argument: file, iter folder or a
// directory's newest), rebuilt from the configuration it saved, on `device` in `dtype`.
std::unique_ptr<RewardModel> load_reward_model(const std::string& checkpoint, Device device, DType dtype = DType::F32);

class RewardModelTrainer : public PreferenceTrainer {
 public:
  RewardModelTrainer(const PreferenceRunConfig& config, Log log, Communicator* dp = nullptr);
  const RewardModel& model() const { return *model_; }

 protected:
  PairOutputs forward_pairs(const PreferenceBatch& batch, Split split,
                            const std::vector<int64_t>& pair_indices) override;
  std::vector<Tensor> trainable_parameters() const override { return model_->parameters(); }
  void set_training(bool training) override { model_->train(training); }
  std::map<std::string, SavedParameter> checkpoint_parameters() const override;

 private:
  std::unique_ptr<RewardModel> model_;
};

}  // namespace tessera
