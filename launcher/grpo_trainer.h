// GRPO (Shao et al. 2024, DeepSeekMath; TRL's GRPOTrainer) on a GptModel policy with a
// programmatic reward. One step:
//   1. rollout: this rank's prompts of the step, group_size samples each, generated with the KV
//      cache (the cache is freed when generation returns, before any training memory is taken);
//   2. rewards from the reward function on the decoded responses; group-normalized advantages
//      (posttrain/advantages.h), one per sequence;
//   3. per-token log-probs of the rollout under the policy as it was ("old", for the ratio) and
//      under the frozen reference (for the KL term), both without gradient;
//   4. `epochs` passes over the rollout in `num_minibatches` minibatches, one AdamW step each,
//      minimizing   ppo_policy_loss(logp, old, A, clip_eps) + kl_coef * token mean of k3(logp, ref)
//      where both terms are token means over every response token of the minibatch on all
//      data-parallel ranks (micro-batches and ranks are weighted by their token counts, so the
//      loss and gradient equal one rank's over the whole minibatch).
// Data parallelism: each rank samples its own share of the step's prompts and gradients are
// summed over the ranks before the optimizer step; logged statistics are over all ranks.
// The policy stays in eval mode (no dropout: the ratio compares the distributions the samples
// were drawn from).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "launcher/grpo_prompts.h"
#include "models/generation.h"
#include "models/gpt_model.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"
#include "posttrain/rewards.h"
#include "posttrain/rollout.h"

namespace tessera {

// The frozen model the KL term is measured against: a copy of the starting weights, or with LoRA
// the policy itself with its adapters switched off (no second copy of the weights).
class ReferencePolicy {
 public:
  virtual ~ReferencePolicy() = default;
  // log p_ref of `batch`'s response tokens [N, T] (0 elsewhere), without gradient.
  virtual Tensor log_probs(const RolloutBatch& batch, double temperature) const = 0;
};

// A copy of the starting weights in a model of the same configuration, dtype and device.
class FrozenCopyReference final : public ReferencePolicy {
 public:
  explicit FrozenCopyReference(const GptModel& policy);
  Tensor log_probs(const RolloutBatch& batch, double temperature) const override;

 private:
  std::unique_ptr<GptModel> model_;
};

// The LoRA policy with its adapters off (models/lora.h LoraDisabledScope): the base it started
// from, since only the adapters train. `policy` must outlive this.
class LoraBaseReference final : public ReferencePolicy {
 public:
  explicit LoraBaseReference(const GptModel& policy);
  Tensor log_probs(const RolloutBatch& batch, double temperature) const override;

 private:
  const GptModel& policy_;
};

struct GrpoTrainerOptions {
  int64_t prompts_per_step = 8;  // over all data-parallel ranks (train.global_batch_size)
  int64_t group_size = 8;        // samples per prompt (grpo.group_size), >= 2
  int64_t micro_batch_size = 8;  // rows per forward/backward (train.micro_batch_size)
  int64_t num_minibatches = 1;   // optimizer steps per pass over a rollout
  int64_t epochs = 1;            // passes over each rollout
  int64_t max_new_tokens = 16;
  SamplingOptions sampling;  // temperature > 0 (GRPO needs different samples in a group)
  double clip_eps = 0.2;
  double kl_coef = 0.04;      // beta; 0 skips the reference
  bool scale_rewards = true;  // false: Dr. GRPO's r - mean
  AdamWOptions adamw;
  double clip_grad = 1.0;  // 0: no clipping
  uint64_t seed = 1234;    // prompt order and sampling
};

// Throws naming the first option out of range for `data_parallel_size` ranks (with the recipe
// key it comes from).
void validate(const GrpoTrainerOptions& options, int64_t data_parallel_size);

// One micro-batch of a rollout: rows [j * micro_batch_size, (j + 1) * micro_batch_size).
struct GrpoMicroBatch {
  RolloutBatch batch;
  Tensor advantages;     // [m, 1] f32
  Tensor old_log_probs;  // [m, T] under the policy that sampled
  Tensor ref_log_probs;  // [m, T] under the reference (undefined when kl_coef is 0)
};

struct GrpoRollout {
  std::vector<GrpoMicroBatch> micro_batches;
  std::vector<std::string> questions, responses;  // per row (the reward function's inputs)
  std::vector<double> rewards, correct;           // per row
  double response_tokens = 0;                     // this rank's, end tokens included
  double entropy_sum = 0, kl_sum = 0;             // over this rank's response tokens
  double generation_seconds = 0;
  double generation_peak_mib = 0;  // GPU: memory in use at its peak during generation
  double after_release_mib = 0;    // GPU: in use once generation's caches are freed
};

struct GrpoStepStats {
  int64_t step = 0;
  double mean_reward = 0, accuracy = 0;  // accuracy: share of samples `correct` scores >= 1
  double kl = 0;                         // token mean of k3 against the reference (rollout)
  double entropy = 0;                    // token mean of the sampling distribution's entropy
  double clip_fraction = 0;              // over the updates of the step (token-weighted)
  double loss = 0;                       // mean over the updates of the step
  std::vector<double> update_losses;     // each minibatch's loss, in order
  double response_length = 0;            // mean tokens per response (end token included)
  double generation_tokens_per_s = 0, training_tokens_per_s = 0;
  double generation_peak_mib = 0, after_release_mib = 0;
};

struct GrpoEvalStats {
  double mean_reward = 0, accuracy = 0;
  int64_t samples = 0;
};

class GrpoTrainer {
 public:
  // `reward` scores samples; `correct` (optional) is the 1/0 correctness for the accuracy log
  // (default: reward). `end_token` stops a response. `data_parallel` is null for one rank.
  GrpoTrainer(const GrpoTrainerOptions& options, GptModel& policy, std::unique_ptr<ReferencePolicy> reference,
              RewardFunction reward, RewardFunction correct, std::vector<GrpoPrompt> prompts,
              const Tokenizer& tokenizer, Communicator* data_parallel);

  // One rollout and its updates.
  GrpoStepStats step();
  // The pieces of step(), for tests: the next rollout (advances the prompt order and the
  // sampler), and the updates on it.
  GrpoRollout collect_rollout();
  GrpoStepStats train_on(const GrpoRollout& rollout);

  // One sample per prompt of this rank's share of `prompts` (rank r takes r, r + dp, ...) with
  // `sampling` from `seed`; reward and accuracy over all ranks.
  GrpoEvalStats evaluate(const std::vector<GrpoPrompt>& prompts, const SamplingOptions& sampling, uint64_t seed);

  int64_t steps_taken() const { return steps_; }
  const AdamW& optimizer() const { return *optimizer_; }  // over the policy's trainable parameters

 private:
  GenerationOptions generation_options(const SamplingOptions& sampling) const;
  // Sums over the data-parallel ranks (identity on one rank).
  std::vector<double> sum_over_ranks(std::vector<double> values) const;

  GrpoTrainerOptions options_;
  GptModel& policy_;
  std::unique_ptr<ReferencePolicy> reference_;
  RewardFunction reward_, correct_;
  std::vector<GrpoPrompt> prompts_;
  const Tokenizer& tokenizer_;
  Communicator* data_parallel_;
  int64_t rank_ = 0, world_ = 1;
  std::vector<Tensor> parameters_;
  std::unique_ptr<AdamW> optimizer_;
  std::vector<int64_t> order_;  // shuffled prompt indices, walked step by step
  int64_t next_prompt_ = 0;
  Generator sampler_;
  int64_t steps_ = 0;
};

}  // namespace tessera
