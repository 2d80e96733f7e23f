// What PPO's critic and reward model say about rollout rows (posttrain/rollout.h's RolloutBatch):
// both are RewardModel-shaped (a GptModel backbone + a scalar RewardHead, posttrain/reward_model.h).
//   rollout_values: the critic's value of every state a response token is chosen in. Position t
//     of a row is the state before labels[t] is emitted (the same position rollout_log_probs
//     scores), so values[b, t] = head(hidden[b, t]) where response_mask is 1, 0 elsewhere -> [N, T]
//     f32 (differentiable unless called under NoGradGuard).
//   rollout_scores: the reward model's score of each whole row (prompt + response, the end token
//     included where the response has one), read at the row's last token -> [N] f32.
#pragma once

#include "core/tensor.h"
#include "posttrain/reward_model.h"
#include "posttrain/rollout.h"

namespace tessera {

Tensor rollout_values(const RewardModel& critic, const RolloutBatch& batch);
Tensor rollout_scores(const RewardModel& reward_model, const RolloutBatch& batch);

}  // namespace tessera
