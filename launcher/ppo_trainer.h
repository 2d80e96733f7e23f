// PPO for RLHF (Ouyang et al. 2022; Ziegler et al. 2019), as TRL's PPOTrainer and NeMo-Aligner
// run it, on a GptModel actor, a critic (a RewardModel-shaped backbone + scalar value head read at
// every position), a frozen reference and a reward: a reward model, a programmatic reward
// function, or the sum of both. One step:
//   1. rollout: this rank's prompts of the step, samples_per_prompt samples each, generated with
//      the KV cache (posttrain/rollout.h);
//   2. scores of the whole responses (reward model and/or reward function); per-token log-probs
//      under the actor ("old") and the reference, and the critic's values, all without gradient;
//   3. per-token rewards: -kl_coef * (old - ref) on every response token, plus the score on the
//      last one (ppo_token_rewards); GAE(gamma, lam) -> advantages and returns; advantages
//      whitened over every response token of the step on all ranks (mean 0, unit variance);
//   4. `epochs` passes over the rollout in `num_minibatches` minibatches: per minibatch one AdamW
//      step of the actor on ppo_policy_loss(logp, old, A, clip_eps) and one of the critic (its
//      own AdamW) on ppo_value_loss(v, old_v, returns, value_clip); both token means over every
//      response token of the minibatch on all ranks (micro-batches and ranks weighted by their
//      token counts, so the update equals one rank's over the whole minibatch).
// Data parallelism: each rank samples its own share of the prompts; gradients are summed over the
// ranks before each optimizer step; logged statistics are over all ranks. Actor and critic stay in
// eval mode (no dropout), so the ratio compares the distributions the samples were drawn from.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "launcher/grpo_prompts.h"
#include "launcher/grpo_trainer.h"
#include "models/generation.h"
#include "models/gpt_model.h"
#include "optim/adamw.h"
#include "parallel/communicator.h"
#include "posttrain/reward_model.h"
#include "posttrain/rewards.h"
#include "posttrain/rollout.h"

namespace tessera {

struct PpoTrainerOptions {
  int64_t prompts_per_step = 8;    // over all data-parallel ranks (train.global_batch_size)
  int64_t samples_per_prompt = 1;  // ppo.samples_per_prompt
  int64_t micro_batch_size = 8;    // rows per forward/backward (train.micro_batch_size)
  int64_t num_minibatches = 1;     // actor and critic steps per pass over a rollout
  int64_t epochs = 1;              // passes over each rollout
  int64_t max_new_tokens = 16;
  SamplingOptions sampling;  // temperature > 0
  double clip_eps = 0.2;     // policy ratio clip
  double value_clip = 0.2;   // critic: values stay within old_value +- value_clip
  double kl_coef = 0.05;     // per-token k1 penalty in the rewards; 0 skips the reference
  double gamma = 1.0, lam = 0.95;
  bool whiten_advantages = true;
  AdamWOptions actor_adamw, critic_adamw;
  double clip_grad = 1.0;  // each model's gradient norm; 0: no clipping
  uint64_t seed = 1234;    // prompt order and sampling
};

// Throws naming the first option out of range (with its recipe key) for `data_parallel_size` ranks.
void validate(const PpoTrainerOptions& options, int64_t data_parallel_size);

// What scores a response: a reward model (scores the token rows) and/or a reward function (scores
// the text); both given -> their sum. `correct` (optional) is the 1/0 correctness behind the
// accuracy log.
struct PpoReward {
  const RewardModel* model = nullptr;
  RewardFunction function, correct;
};

// One micro-batch of a rollout: rows [j * micro_batch_size, (j + 1) * micro_batch_size).
struct PpoMicroBatch {
  RolloutBatch batch;
  Tensor scores;         // [m] f32, on the host
  Tensor old_log_probs;  // [m, T] under the actor that sampled
  Tensor ref_log_probs;  // [m, T] under the reference (undefined when kl_coef is 0)
  Tensor old_values;     // [m, T] f32, the critic's before the updates
  Tensor advantages;     // [m, T] f32, after GAE (and whitening)
  Tensor returns;        // [m, T] f32, GAE advantages + old values (before whitening)
};

struct PpoRollout {
  std::vector<PpoMicroBatch> micro_batches;
  std::vector<std::string> questions, responses;  // per row (the reward function's inputs)
  std::vector<double> scores, correct;            // per row
  double response_tokens = 0;                     // this rank's, end tokens included
  double entropy_sum = 0, kl_sum = 0;             // over this rank's response tokens (kl: k1)
  double generation_seconds = 0;
  double generation_peak_mib = 0;  // GPU: memory in use at its peak during generation
  double after_release_mib = 0;    // GPU: in use once generation's KV cache is freed
};

struct PpoStepStats {
  int64_t step = 0;
  double mean_reward = 0, accuracy = 0;               // reward: mean score (before the KL penalty)
  double kl = 0;                                      // token mean of k1 = old - ref over the rollout
  double entropy = 0;                                 // token mean of the sampling distribution's entropy
  double clip_fraction = 0, value_clip_fraction = 0;  // over the updates of the step (token-weighted)
  double policy_loss = 0, value_loss = 0;             // means over the updates of the step
  std::vector<double> policy_losses, value_losses;    // each minibatch's, in order
  double explained_variance = 0;                      // 1 - Var(returns - values) / Var(returns), rollout tokens
  double response_length = 0;                         // mean tokens per response (end token included)
  double generation_tokens_per_s = 0, training_tokens_per_s = 0;
  double generation_peak_mib = 0, after_release_mib = 0;  // GPU only (0 on the CPU)
};

struct PpoEvalStats {
  double mean_reward = 0, accuracy = 0;
  int64_t samples = 0;
};

class PpoTrainer {
 public:
  // `reference` may be null when kl_coef is 0. `data_parallel` is null for one rank.
  PpoTrainer(const PpoTrainerOptions& options, GptModel& actor, RewardModel& critic,
             std::unique_ptr<ReferencePolicy> reference, PpoReward reward, std::vector<GrpoPrompt> prompts,
             const Tokenizer& tokenizer, Communicator* data_parallel);

  PpoStepStats step();
  // The pieces of step(), for tests.
  PpoRollout collect_rollout();
  PpoStepStats train_on(const PpoRollout& rollout);

  // One response per prompt of this rank's share of `prompts` (rank r takes r, r + dp, ...),
  // sampled with `sampling` from `seed` (temperature 0: greedy), scored like the rollouts;
  // reward and accuracy over all ranks.
  PpoEvalStats evaluate(const std::vector<GrpoPrompt>& prompts, const SamplingOptions& sampling, uint64_t seed);

  int64_t steps_taken() const { return steps_; }
  const AdamW& actor_optimizer() const { return *actor_optimizer_; }  // over the actor's trainable parameters

 private:
  GenerationOptions generation_options(const SamplingOptions& sampling) const;
  std::vector<double> sum_over_ranks(std::vector<double> values) const;
  void all_reduce_gradients(const std::vector<Tensor>& parameters) const;
  // Samples `prompts` (one response each, end token kept) and scores them.
  struct Scored {
    std::vector<std::vector<int32_t>> responses;
    std::vector<std::string> texts;
    std::vector<double> scores, correct;
  };
  Scored sample_and_score(const std::vector<const GrpoPrompt*>& prompts, int64_t samples,
                          const SamplingOptions& sampling, Generator& generator);

  PpoTrainerOptions options_;
  GptModel& actor_;
  RewardModel& critic_;
  std::unique_ptr<ReferencePolicy> reference_;
  PpoReward reward_;
  std::vector<GrpoPrompt> prompts_;
  const Tokenizer& tokenizer_;
  Communicator* data_parallel_;
  int64_t rank_ = 0, world_ = 1;
  std::vector<Tensor> actor_parameters_, critic_parameters_;
  std::unique_ptr<AdamW> actor_optimizer_, critic_optimizer_;
  std::vector<int64_t> order_;
  int64_t next_prompt_ = 0;
  Generator sampler_;
  int64_t steps_ = 0;
};

}  // namespace tessera
