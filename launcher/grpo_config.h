// What `tessera grpo RECIPE` runs, read from the recipe: the model section (it must describe the
// checkpoint grpo.init_from holds), the tokenizer and chat template (data.*), the grpo.* section,
// and from the shared sections: train.global_batch_size = prompts per step over all ranks,
// train.micro_batch_size = rollout rows per forward/backward, train.train_iters = GRPO steps,
// train.eval_interval, train.seed, train.device, train.precision; optimizer.lr (constant),
// weight_decay, adam_beta1/2, adam_eps, clip_grad; checkpoint.save (the final policy) and
// logging.log_interval / run_dir (metrics.jsonl). Unused keys of other sections are ignored.
// A lora section (rank, alpha, dropout, target_modules; docs/lora.md) trains adapters on
// grpo.init_from's frozen model; lora.base must then be unset or equal grpo.init_from.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "launcher/grpo_trainer.h"
#include "launcher/recipe.h"
#include "launcher/rollout_recipe.h"
#include "models/transformer_config.h"

namespace tessera {

struct GrpoConfig : RolloutRunConfig {
  GrpoTrainerOptions trainer;
};

// Throws a one-line reason naming the key (e.g. a missing grpo.init_from) before any work.
GrpoConfig grpo_config_from_recipe(const Recipe& recipe);

}  // namespace tessera
