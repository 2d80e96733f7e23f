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
#include "models/transformer_config.h"

namespace tessera {

struct PpoConfig {
  TransformerConfig model;
  PpoTrainerOptions trainer;
  std::string init_from;              // the actor's (and the reference's) starting checkpoint
  std::string critic_init_from;       // resolved: ppo.critic_init_from, else reward_model, else init_from
  std::string reward_model;           // a `tessera reward-model` checkpoint, or empty
  std::string reward = "arithmetic";  // a programmatic reward, or "none"
  double format_penalty = 0.0;
  std::vector<std::string> prompts_path, eval_prompts_path;
  int64_t eval_prompts = 0;  // 0: all
  std::string chat_template = "gpt2";
  std::string tokenizer_model, vocab_file, merge_file;  // data.*
  int64_t steps = 1;
  int64_t eval_interval = 1000;
  int64_t log_interval = 1;
  Device device = Device::cpu();
  DType dtype = DType::F32;  // bf16 on a GPU with train.precision bf16, else f32
  std::string save, run_dir;
};

// Throws a one-line reason naming the key (no reward source, a missing ppo.init_from) before any work.
PpoConfig ppo_config_from_recipe(const Recipe& recipe);

}  // namespace tessera
