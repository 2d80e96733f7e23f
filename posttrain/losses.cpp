#include "posttrain/losses.h"

#include "core/check.h"
#include "core/ops/ops.h"
#include "posttrain/log_probs.h"

namespace tessera {

namespace {

Tensor scalar_like(double value, const Tensor& like) { return Tensor::full({}, value, like.dtype(), like.device()); }

// log sigmoid(x) = -softplus(-x), softplus(x) = x + log(1 + e^-x) for x > 0 and log(1 + e^x)
// otherwise: no overflow for large |x|, and the gradient at x = 0 (DPO's first step, where the
// policy is the reference) is the true 1/2: the branch is chosen by a gradient-free mask.
Tensor log_sigmoid(const Tensor& x) {
  Tensor negative = lt(x, scalar_like(0.0, x));  // -x > 0
  Tensor minus_x = neg(x);
  Tensor sign = affine(negative, 2.0, -1.0);  // +1 where -x > 0, else -1
  Tensor softplus = add(mul(minus_x, negative), log(affine(exp(neg(mul(minus_x, sign))), 1.0, 1.0)));
  return neg(softplus);
}

// clamp(x, low, high) with torch.clamp's gradient: 1 inside [low, high] (bounds included), 0 outside.
Tensor clamp(const Tensor& x, const Tensor& low, const Tensor& high) {
  Tensor below = lt(x, low);
  Tensor above = gt(x, high);
  Tensor inside = affine(add(below, above), -1.0, 1.0);
  return add(mul(x, inside), add(mul(low.detach(), below), mul(high.detach(), above)));
}

// Elementwise max(a, b); the gradient goes to a on ties (then both terms are equal anyway in PPO's use).
Tensor maximum(const Tensor& a, const Tensor& b, Tensor* b_larger) {
  Tensor mask = gt(b, a);
  if (b_larger != nullptr) *b_larger = mask;
  return add(a, mul(sub(b, a), mask));
}

void check_same_shape(const char* name, const Tensor& a, const char* a_name, const Tensor& b, const char* b_name) {
  TS_CHECK(a.defined() && b.defined(), name, ": ", a_name, " and ", b_name, " must be defined");
  TS_CHECK(a.shape() == b.shape(), name, ": ", a_name, " shape ", a.shape(), " differs from ", b_name, " shape ",
           b.shape());
  TS_CHECK(a.dtype() == b.dtype(), name, ": ", a_name, " is ", dtype_name(a.dtype()), " but ", b_name, " is ",
           dtype_name(b.dtype()));
}

void check_pairs(const char* name, const Tensor& chosen, const Tensor& rejected) {
  check_same_shape(name, chosen, "chosen", rejected, "rejected");
  TS_CHECK(chosen.dim() == 1 && chosen.numel() > 0, name, ": expects one value per pair, shape [N] with N > 0, got ",
           chosen.shape());
}

}  // namespace

Tensor sft_loss(const Tensor& token_logprobs, const Tensor& response_mask) {
  return neg(masked_mean(token_logprobs, response_mask));
}

BradleyTerryResult bradley_terry_loss(const Tensor& chosen_rewards, const Tensor& rejected_rewards) {
  check_pairs("bradley_terry_loss", chosen_rewards, rejected_rewards);
  BradleyTerryResult result;
  result.loss = neg(mean(log_sigmoid(sub(chosen_rewards, rejected_rewards))));
  result.accuracy = mean(gt(chosen_rewards, rejected_rewards));
  return result;
}

DpoResult dpo_loss(const Tensor& policy_chosen, const Tensor& policy_rejected, const Tensor& ref_chosen,
                   const Tensor& ref_rejected, const DpoOptions& options) {
  check_pairs("dpo_loss", policy_chosen, policy_rejected);
  check_same_shape("dpo_loss", policy_chosen, "policy_chosen", ref_chosen, "ref_chosen");
  check_same_shape("dpo_loss", policy_rejected, "policy_rejected", ref_rejected, "ref_rejected");
  TS_CHECK(options.beta > 0, "dpo_loss: beta must be > 0, got ", options.beta);
  TS_CHECK(options.label_smoothing >= 0 && options.label_smoothing < 0.5,
           "dpo_loss: label_smoothing must be in [0, 0.5), got ", options.label_smoothing);
  TS_CHECK(!options.ipo || options.label_smoothing == 0, "dpo_loss: label_smoothing ", options.label_smoothing,
           " applies to the sigmoid (DPO) loss only; set it to 0 with ipo");
  Tensor chosen_logratio = sub(policy_chosen, ref_chosen.detach());
  Tensor rejected_logratio = sub(policy_rejected, ref_rejected.detach());
  Tensor h = sub(chosen_logratio, rejected_logratio);
  Tensor per_pair;
  if (options.ipo) {
    per_pair = square(affine(h, 1.0, -1.0 / (2.0 * options.beta)));
  } else {
    Tensor logits = scale(h, options.beta);
    per_pair = neg(scale(log_sigmoid(logits), 1.0 - options.label_smoothing));
    if (options.label_smoothing > 0) per_pair = sub(per_pair, scale(log_sigmoid(neg(logits)), options.label_smoothing));
  }
  DpoResult result;
  result.loss = mean(per_pair);
  result.chosen_rewards = scale(chosen_logratio.detach(), options.beta);
  result.rejected_rewards = scale(rejected_logratio.detach(), options.beta);
  result.margins = sub(result.chosen_rewards, result.rejected_rewards);
  result.accuracy = mean(gt(result.chosen_rewards, result.rejected_rewards));
  return result;
}

PpoPolicyResult ppo_policy_loss(const Tensor& logprobs, const Tensor& old_logprobs, const Tensor& advantages,
                                const Tensor& mask, double clip_eps) {
  check_same_shape("ppo_policy_loss", logprobs, "logprobs", old_logprobs, "old_logprobs");
  TS_CHECK(logprobs.dim() == 2, "ppo_policy_loss: logprobs must be [B, T], got ", logprobs.shape());
  TS_CHECK(advantages.defined() && advantages.dim() == 2 && advantages.size(0) == logprobs.size(0) &&
               (advantages.size(1) == logprobs.size(1) || advantages.size(1) == 1),
           "ppo_policy_loss: advantages must be [B, T] or [B, 1] for logprobs ", logprobs.shape(), ", got ",
           advantages.defined() ? advantages.shape() : Shape{});
  TS_CHECK(clip_eps > 0 && clip_eps < 1, "ppo_policy_loss: clip_eps must be in (0, 1), got ", clip_eps);
  Tensor log_ratio = sub(logprobs, old_logprobs.detach());
  Tensor ratio = exp(log_ratio);
  Tensor minus_a = neg(advantages.detach().to(logprobs.dtype()));
  Tensor unclipped = mul(minus_a, ratio);
  Tensor clipped = mul(minus_a, clamp(ratio, scalar_like(1.0 - clip_eps, ratio), scalar_like(1.0 + clip_eps, ratio)));
  Tensor clipped_larger;
  Tensor per_token = maximum(unclipped, clipped, &clipped_larger);
  PpoPolicyResult result;
  result.loss = masked_mean(per_token, mask);
  result.clip_fraction = masked_mean(clipped_larger, mask);
  result.approx_kl = scale(masked_mean(square(log_ratio.detach()), mask), 0.5);
  return result;
}

PpoValueResult ppo_value_loss(const Tensor& values, const Tensor& old_values, const Tensor& returns, const Tensor& mask,
                              double clip) {
  check_same_shape("ppo_value_loss", values, "values", old_values, "old_values");
  check_same_shape("ppo_value_loss", values, "values", returns, "returns");
  TS_CHECK(clip > 0, "ppo_value_loss: clip (cliprange_value) must be > 0, got ", clip);
  Tensor old = old_values.detach();
  Tensor target = returns.detach();
  Tensor clipped_values = clamp(values, affine(old, 1.0, -clip), affine(old, 1.0, clip));
  Tensor clipped_larger;
  Tensor per_token = maximum(square(sub(values, target)), square(sub(clipped_values, target)), &clipped_larger);
  PpoValueResult result;
  result.loss = scale(masked_mean(per_token, mask), 0.5);
  result.clip_fraction = masked_mean(clipped_larger, mask);
  return result;
}

Tensor kl_penalty(const Tensor& logprobs, const Tensor& ref_logprobs, KlEstimator estimator) {
  check_same_shape("kl_penalty", logprobs, "logprobs", ref_logprobs, "ref_logprobs");
  Tensor log_ratio = sub(logprobs, ref_logprobs.detach());  // log(pi / ref)
  if (estimator == KlEstimator::K1) return log_ratio;
  // ref/pi - log(ref/pi) - 1 with log(ref/pi) = -log_ratio.
  return sub(add(exp(neg(log_ratio)), log_ratio), scalar_like(1.0, log_ratio));
}

}  // namespace tessera
