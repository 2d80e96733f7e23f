// Advantage estimation for PPO and GRPO. These run on rollout data, outside the graph: inputs
// are read to the host in f64, outputs come back in the inputs' dtype and device, with no
// gradient. Masks are [B, T] with 1 on response tokens.
#pragma once

#include "core/tensor.h"

namespace tessera {

// PPO's per-token rewards (Ziegler et al. 2019, TRL): -kl_coef * kl[b, t] on every response
// token, plus scores[b] on each row's last response token. kl [B, T] is a per-token estimate
// (kl_penalty), scores [B] the reward model's (or a reward function's) sequence scores.
Tensor ppo_token_rewards(const Tensor& scores, const Tensor& kl, const Tensor& mask, double kl_coef);

struct GaeResult {
  Tensor advantages;  // [B, T], 0 where mask is 0
  Tensor returns;     // [B, T] advantages + values, 0 where mask is 0
};
// Generalised advantage estimation (Schulman et al. 2016), right to left over each row:
//   delta_t = r_t + gamma V_{t'} - V_t,  A_t = delta_t + gamma lambda A_{t'}
// where t' is the next response token of the row; after the row's last response token the
// episode ends (V = 0, A = 0). Masked positions are skipped: they neither bootstrap nor break
// the chain (a prompt prefix or padding suffix is simply outside the episode).
GaeResult gae(const Tensor& rewards, const Tensor& values, const Tensor& mask, double gamma, double lambda);

// (x - mean) / sqrt(var + 1e-8) over the elements where mask is 1, with the unbiased (n - 1)
// variance, as TRL's masked_whiten; shift_mean = false adds the mean back. Masked-out elements
// become 0. Needs at least two selected elements.
Tensor whiten(const Tensor& values, const Tensor& mask, bool shift_mean = true);

struct GrpoOptions {
  int64_t group_size = 0;    // samples per prompt; rewards are grouped as [num_prompts, group_size]
  bool scale_by_std = true;  // false: r - mean only (Dr. GRPO)
  double eps = 1e-4;         // added to the std (TRL's value)
};
// GRPO's advantages (Shao et al. 2024, DeepSeekMath; TRL's GRPOTrainer): rewards [P * G], one
// per sample, sample i belonging to prompt i / G; (r - group mean) / (group std + eps) with the
// sample standard deviation (Bessel's n - 1, torch.std's default as TRL uses it). Returns [P * G].
Tensor grpo_advantages(const Tensor& rewards, const GrpoOptions& options);

}  // namespace tessera
