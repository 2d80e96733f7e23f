// Losses of post-training, on per-token or per-sequence log-probabilities and rewards
// (posttrain/log_probs.h computes those from logits). Each returns a differentiable scalar
// `loss` and detached statistics to log (0-d or per-pair tensors). Conventions follow the
// papers and TRL, the reference implementation tests/reference/posttrain_losses_torch.py
// mirrors:
//   - SFT: mean of -log p over the response tokens (the prompt is masked out).
//   - Bradley-Terry (reward model): mean over pairs of -log sigmoid(r_chosen - r_rejected);
//     accuracy counts r_chosen > r_rejected strictly (a tie is wrong).
//   - DPO (Rafailov et al. 2023): h = (pi_c - ref_c) - (pi_r - ref_r) from sequence log-probs;
//     loss = -(1 - ls) log sigmoid(beta h) - ls log sigmoid(-beta h), mean over pairs (ls > 0 is
//     conservative DPO, TRL's label_smoothing). IPO (Azar et al. 2023): (h - 1/(2 beta))^2;
//     TRL feeds IPO length-averaged log-probs: that is the caller's choice of inputs here.
//     Rewards: beta (pi - ref) per pair, margin = chosen - rejected.
//   - PPO (Schulman et al. 2017; TRL's PPO trainer): ratio = exp(logp - old_logp); per token
//     max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps)), averaged over every response token of the
//     batch (token-level mean, not a mean of per-sequence means). Value loss:
//     0.5 * mean over tokens of max((v - R)^2, (clip(v, v_old - c, v_old + c) - R)^2).
// Reference and old quantities (ref_*, old_*, advantages, returns) are detached here.
#pragma once

#include "core/tensor.h"

namespace tessera {

// Mean of -logp over the tokens where response_mask is 1 (token_log_probs' output, [B, T]).
Tensor sft_loss(const Tensor& token_logprobs, const Tensor& response_mask);

struct BradleyTerryResult {
  Tensor loss;      // scalar
  Tensor accuracy;  // scalar: fraction of pairs with chosen > rejected
};
// chosen_rewards, rejected_rewards [N] (the reward head's outputs for the two sides of each pair).
BradleyTerryResult bradley_terry_loss(const Tensor& chosen_rewards, const Tensor& rejected_rewards);

struct DpoOptions {
  double beta = 0.1;
  double label_smoothing = 0.0;  // sigmoid loss only, in [0, 0.5)
  bool ipo = false;
};
struct DpoResult {
  Tensor loss;              // scalar
  Tensor chosen_rewards;    // [N] beta (pi_c - ref_c)
  Tensor rejected_rewards;  // [N] beta (pi_r - ref_r)
  Tensor margins;           // [N] chosen_rewards - rejected_rewards
  Tensor accuracy;          // scalar: fraction of pairs with chosen_rewards > rejected_rewards
};
// Sequence log-probs [N] of the chosen and rejected responses under the policy and the frozen reference.
DpoResult dpo_loss(const Tensor& policy_chosen, const Tensor& policy_rejected, const Tensor& ref_chosen,
                   const Tensor& ref_rejected, const DpoOptions& options = {});

struct PpoPolicyResult {
  Tensor loss;           // scalar
  Tensor clip_fraction;  // scalar: share of tokens where the clipped term is the larger one
  Tensor approx_kl;      // scalar: 0.5 mean (logp - old_logp)^2 (TRL's approxkl)
};
// logprobs, old_logprobs, mask [B, T]; advantages [B, T], or [B, 1] for one advantage per
// sequence (GRPO).
PpoPolicyResult ppo_policy_loss(const Tensor& logprobs, const Tensor& old_logprobs, const Tensor& advantages,
                                const Tensor& mask, double clip_eps = 0.2);

struct PpoValueResult {
  Tensor loss;           // scalar (with the 0.5 factor)
  Tensor clip_fraction;  // scalar: share of tokens where the clipped error is the larger one
};
// values, old_values, returns, mask [B, T].
PpoValueResult ppo_value_loss(const Tensor& values, const Tensor& old_values, const Tensor& returns, const Tensor& mask,
                              double clip = 0.2);

// Per-token KL estimators of KL(policy || reference) from sampled tokens (Schulman, "Approximating
// KL divergence"): K1 = logp - ref_logp (unbiased, can be negative); K3 = exp(ref_logp - logp) -
// (ref_logp - logp) - 1 (unbiased, never negative). Differentiable in logprobs; ref is detached.
enum class KlEstimator { K1, K3 };
Tensor kl_penalty(const Tensor& logprobs, const Tensor& ref_logprobs, KlEstimator estimator = KlEstimator::K1);

}  // namespace tessera
