// The loop both preference-tuning commands share (`tessera dpo`, `tessera reward-model`): the
// steps over preference_step_pairs' batches (launcher/preference_batches.h), gradient
// accumulation over micro-batches, the data-parallel gradient sum, clipping, AdamW and the LR
// schedule of the recipe, metrics (log lines on rank 0 and RUN_DIR/metrics.jsonl), held-out
// evaluation every train.eval_interval steps and at the end (on the first eval_iters x
// global_batch_size held-out pairs; none with eval_iters 0), and checkpoints (rank 0 writes
// CHECKPOINT.save/iter_NNNNNNN.h5, launcher/checkpoint_directory.h, every save_interval steps
// and at the end). A method (DpoTrainer, RewardModelTrainer) supplies the model, the loss of a
// micro-batch of pairs and its checkpoint contents.
//
// Every pair counts once in the step: a micro-batch of n pairs backpropagates its mean loss
// times n / G, and the data-parallel ranks' gradients are summed, so the update is the gradient
// of the mean over the global batch's G pairs, whatever dp and the micro-batch size are.
// Reported rewards are the method's per-pair scores (DPO: beta (log pi - log ref), reward model:
// the head's scalar), accuracy the share of pairs whose chosen score is strictly higher.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "launcher/checkpoint.h"
#include "launcher/preference_batches.h"
#include "launcher/preference_config.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"

namespace tessera {

struct PreferenceMetrics {
  int64_t step = 0;  // 1-based optimizer step (evaluations: the step they follow)
  double loss = 0.0;
  double accuracy = 0.0;       // chosen score > rejected score
  double chosen_reward = 0.0;  // means over the pairs
  double rejected_reward = 0.0;
  double margin = 0.0;                              // chosen_reward - rejected_reward
  double lr = 0.0, grad_norm = 0.0, seconds = 0.0;  // training steps only
  int64_t pairs = 0;
};

struct PreferenceResult {
  std::vector<PreferenceMetrics> steps;
  std::vector<PreferenceMetrics> evaluations;  // held-out pairs (SECTION.valid_path)
  std::string last_checkpoint;                 // "" when checkpoint.save is empty
};

class PreferenceTrainer {
 public:
  using Log = std::function<void(const std::string&)>;
  // `dp`: the data-parallel group (every rank of the run); nullptr for one process.
  PreferenceTrainer(const PreferenceRunConfig& config, Log log, Communicator* dp);
  virtual ~PreferenceTrainer() = default;
  PreferenceResult run();

 protected:
  struct PairOutputs {
    Tensor loss;      // scalar: the mean over the micro-batch's pairs (differentiable when training)
    Tensor chosen;    // [n] per-pair scores, detached
    Tensor rejected;  // [n]
  };
  enum class Split { kTrain, kValid };
  // The method's loss on pairs `pair_indices` of `split` (batch holds them in that order).
  virtual PairOutputs forward_pairs(const PreferenceBatch& batch, Split split,
                                    const std::vector<int64_t>& pair_indices) = 0;
  virtual std::vector<Tensor> trainable_parameters() const = 0;
  virtual void set_training(bool training) = 0;
  // The checkpoint's /model entries (name -> value and dtype).
  virtual std::map<std::string, SavedParameter> checkpoint_parameters() const = 0;
  // Call at the end of the derived constructor, once the parameters exist.
  void build_optimizer();
  const AdamW& optimizer() const { return *adamw_; }  // after build_optimizer

  const PreferenceRunConfig c_;  // a copy: the trainer may outlive the caller's
  Log log_;
  Communicator* dp_;
  bool logs_ = true;  // rank 0
  PreferenceDatasets data_;

 private:
  // Sums of loss x pairs, correct pairs, chosen and rejected scores over `pairs` of `split`,
  // in micro-batches (the caller sums over ranks).
  std::vector<double> run_pairs(Split split, const std::vector<int64_t>& pairs, bool backward, double scale);
  PreferenceMetrics metrics_from_sums(const std::vector<double>& sums, int64_t pairs) const;
  PreferenceMetrics evaluate(int64_t step);
  std::string save(int64_t step);
  std::vector<double> sum_over_ranks(std::vector<double> values) const;
  // This rank's contiguous share of `pairs`.
  std::vector<int64_t> my_share(const std::vector<int64_t>& pairs) const;

  std::unique_ptr<AdamW> adamw_;
  std::vector<Tensor> parameters_;
};

}  // namespace tessera
