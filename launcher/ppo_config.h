// What `tessera ppo RECIPE` runs, read from the recipe: the model section (it must describe the
// checkpoint ppo.init_from holds), the tokenizer and chat template (data.*), the ppo.* section,
// and from the shared sections: train.global_batch_size = prompts per step over all ranks,
// train.micro_batch_size = rollout rows per forward/backward, train.train_iters = PPO steps,
// train.eval_interval, train.seed, train.device, train.precision; optimizer.lr (the actor's,
// constant; ppo.critic_lr the critic's), weight_decay, adam_beta1/2, adam_eps, clip_grad;
// checkpoint.save (the final actor) and logging.log_interval / run_dir (metrics.jsonl).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "launcher/ppo_trainer.h"
#include "launcher/recipe.h"
#include "launcher/rollout_recipe.h"
#include "models/transformer_config.h"

namespace tessera {

struct PpoConfig : RolloutRunConfig {  // reward: a programmatic reward, or "none"
  PpoTrainerOptions trainer;
  std::string critic_init_from;  // resolved: ppo.critic_init_from, else reward_model, else init_from
  std::string reward_model;      // a `tessera reward-model` checkpoint, or empty
};

// Throws a one-line reason naming the key (no reward source, a missing ppo.init_from) before any work.
PpoConfig ppo_config_from_recipe(const Recipe& recipe);

}  // namespace tessera
