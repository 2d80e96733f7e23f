// DPO (and IPO) on preference pairs, `tessera dpo` (docs/dpo.md): the policy starts from
// dpo.init_from and trains; the frozen reference (launcher/dpo_reference.h) holds
// dpo.reference_from's weights (by default the same checkpoint) and its log-probs are cached
// per pair. Each micro-batch runs the policy on its chosen and rejected rows in one forward
// ([2n, T]), sums the log-probs over the response tokens (the prompt is masked out) and takes
// posttrain's dpo_loss (beta, label smoothing, dpo or ipo). Rewards are beta (log pi - log ref).
// The loop, data parallelism, evaluation and checkpoints are PreferenceTrainer's; checkpoints hold
// the policy under GptModel's names, so generate/export/`tessera dpo` read them like any run's.
// With a lora section (docs/lora.md) the policy is dpo.init_from's model as a frozen base plus
// adapters (B = 0: it starts equal to the reference), only the adapters are optimized and
// all-reduced over dp, the reference is the policy with its adapters off (no copy; the memory
// line says so), and checkpoints hold the adapters alone; the saved recipe's lora.base names
// dpo.init_from, so `tessera export` merges them as for a `tessera train` LoRA run.
#pragma once

#include <memory>

#include "launcher/dpo_reference.h"
#include "launcher/preference_trainer.h"

namespace tessera {

// A model of the recipe's configuration holding `checkpoint`'s weights (generate's reading of a
// checkpoint argument: a file, an iter folder or a directory's newest), on the run's device in its
// parameter dtype. `key` names the recipe key in errors.
std::unique_ptr<GptModel> load_preference_model(const TrainConfig& c, const std::string& checkpoint,
                                                const std::string& key);

class DpoTrainer : public PreferenceTrainer {
 public:
  DpoTrainer(const PreferenceRunConfig& config, Log log, Communicator* dp = nullptr);
  const GptModel& policy() const { return *policy_; }
  const DpoReference& reference() const { return *reference_; }

 protected:
  PairOutputs forward_pairs(const PreferenceBatch& batch, Split split,
                            const std::vector<int64_t>& pair_indices) override;
  // With LoRA the adapters; otherwise every parameter.
  std::vector<Tensor> trainable_parameters() const override;
  void set_training(bool training) override { policy_->train(training); }
  std::map<std::string, SavedParameter> checkpoint_parameters() const override;

 private:
  std::unique_ptr<GptModel> policy_;
  std::unique_ptr<DpoReference> reference_;
};

}  // namespace tessera
