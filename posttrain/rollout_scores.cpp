#include "posttrain/rollout_scores.h"

#include "core/ops/ops.h"

namespace tessera {

Tensor rollout_values(const RewardModel& critic, const RolloutBatch& batch) {
  const Tensor values = critic.head().values(critic.backbone().forward_hidden(batch.tokens)).to(DType::F32);
  return values * batch.response_mask;
}

Tensor rollout_scores(const RewardModel& reward_model, const RolloutBatch& batch) {
  std::vector<int64_t> lengths;
  for (int64_t i = 0; i < batch.rows(); ++i) lengths.push_back(batch.prompt_lengths[i] + batch.response_lengths[i]);
  return reward_model.rewards(batch.tokens, lengths).to(DType::F32);
}

}  // namespace tessera
