// Shared by the PPO tests: a critic whose backbone starts as a copy of the actor's weights (what
// `tessera ppo` builds from an LM checkpoint) with a fresh value head from `seed`.
#pragma once

#include <memory>

#include "core/autograd/grad_mode.h"
#include "core/check.h"
#include "models/gpt_model.h"
#include "posttrain/reward_model.h"

namespace tessera::testing {

inline std::unique_ptr<RewardModel> critic_from(const GptModel& actor, uint64_t seed) {
  auto critic = std::make_unique<RewardModel>(actor.config(), seed);
  const auto source = actor.named_parameters();
  const auto target = critic->backbone().named_parameters();
  TS_CHECK(source.size() == target.size(), "critic_from: parameter counts differ");
  NoGradGuard no_grad;
  for (size_t i = 0; i < source.size(); ++i) {
    Tensor weight = target[i].second;
    weight.copy_(source[i].second);
  }
  return critic;
}

}  // namespace tessera::testing
