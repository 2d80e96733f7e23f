#include "launcher/ppo_config.h"

#include "core/check.h"

namespace tessera {

PpoConfig ppo_config_from_recipe(const Recipe& recipe) {
  PpoConfig c;
  static_cast<RolloutRunConfig&>(c) = rollout_run_config(recipe, "ppo", "PPO", "actor");
  c.reward_model = recipe.get_string("ppo.reward_model");
  TS_CHECK(!c.reward_model.empty() || c.reward != "none",
           "the recipe has no reward: ppo.reward is none and ppo.reward_model is not set; set ppo.reward_model to a "
           "`tessera reward-model` checkpoint or ppo.reward to arithmetic, addition or sorting");
  c.critic_init_from = recipe.get_string("ppo.critic_init_from");
  if (c.critic_init_from.empty()) c.critic_init_from = c.reward_model.empty() ? c.init_from : c.reward_model;

  PpoTrainerOptions& t = c.trainer;
  t.prompts_per_step = recipe.get_int("train.global_batch_size");
  t.micro_batch_size = recipe.get_int("train.micro_batch_size");
  t.samples_per_prompt = recipe.get_int("ppo.samples_per_prompt");
  t.num_minibatches = recipe.get_int("ppo.num_minibatches");
  t.epochs = recipe.get_int("ppo.epochs");
  t.max_new_tokens = recipe.get_int("ppo.max_new_tokens");
  t.sampling = {recipe.get_float("ppo.temperature"), recipe.get_int("ppo.top_k"), recipe.get_float("ppo.top_p")};
  t.clip_eps = recipe.get_float("ppo.clip_eps");
  t.value_clip = recipe.get_float("ppo.value_clip");
  t.kl_coef = recipe.get_float("ppo.kl_coef");
  t.gamma = recipe.get_float("ppo.gamma");
  t.lam = recipe.get_float("ppo.lam");
  t.whiten_advantages = recipe.get_bool("ppo.whiten_advantages");
  t.actor_adamw = {recipe.get_float("optimizer.lr"), recipe.get_float("optimizer.adam_beta1"),
                   recipe.get_float("optimizer.adam_beta2"), recipe.get_float("optimizer.adam_eps"),
                   recipe.get_float("optimizer.weight_decay")};
  t.critic_adamw = t.actor_adamw;
  if (recipe.get_float("ppo.critic_lr") > 0) t.critic_adamw.lr = recipe.get_float("ppo.critic_lr");
  t.clip_grad = recipe.get_float("optimizer.clip_grad");
  t.seed = uint64_t(recipe.get_int("train.seed"));
  validate(t, 1);  // the rank count is checked again once known

  return c;
}

}  // namespace tessera
