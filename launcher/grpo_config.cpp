#include "launcher/grpo_config.h"

#include "core/check.h"

namespace tessera {

GrpoConfig grpo_config_from_recipe(const Recipe& recipe) {
  GrpoConfig c;
  static_cast<RolloutRunConfig&>(c) = rollout_run_config(recipe, "grpo", "GRPO", "policy");

  GrpoTrainerOptions& t = c.trainer;
  t.prompts_per_step = recipe.get_int("train.global_batch_size");
  t.micro_batch_size = recipe.get_int("train.micro_batch_size");
  t.group_size = recipe.get_int("grpo.group_size");
  t.num_minibatches = recipe.get_int("grpo.num_minibatches");
  t.epochs = recipe.get_int("grpo.epochs");
  t.max_new_tokens = recipe.get_int("grpo.max_new_tokens");
  t.sampling = {recipe.get_float("grpo.temperature"), recipe.get_int("grpo.top_k"), recipe.get_float("grpo.top_p")};
  t.clip_eps = recipe.get_float("grpo.clip_eps");
  t.kl_coef = recipe.get_float("grpo.kl_coef");
  t.scale_rewards = recipe.get_bool("grpo.scale_rewards");
  t.adamw = {recipe.get_float("optimizer.lr"), recipe.get_float("optimizer.adam_beta1"),
             recipe.get_float("optimizer.adam_beta2"), recipe.get_float("optimizer.adam_eps"),
             recipe.get_float("optimizer.weight_decay")};
  t.clip_grad = recipe.get_float("optimizer.clip_grad");
  t.seed = uint64_t(recipe.get_int("train.seed"));
  validate(t, 1);  // the rank count is checked again once known

  return c;
}

}  // namespace tessera
