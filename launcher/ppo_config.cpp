#include "launcher/ppo_config.h"

#include "core/check.h"
#include "core/cuda/runtime.h"
#include "launcher/train_config.h"

namespace tessera {

PpoConfig ppo_config_from_recipe(const Recipe& recipe) {
  PpoConfig c;
  c.model = model_config_from_recipe(recipe);
  c.init_from = recipe.get_string("ppo.init_from");
  TS_CHECK(!c.init_from.empty(),
           "ppo.init_from is not set: point it at the checkpoint (directory or file) of the SFT run the actor starts "
           "from, e.g. ppo.init_from=checkpoints/sft_arithmetic_gpt2");
  c.reward_model = recipe.get_string("ppo.reward_model");
  c.reward = recipe.get_string("ppo.reward");
  TS_CHECK(!c.reward_model.empty() || c.reward != "none",
           "the recipe has no reward: ppo.reward is none and ppo.reward_model is not set; set ppo.reward_model to a "
           "`tessera reward-model` checkpoint or ppo.reward to arithmetic, addition or sorting");
  c.critic_init_from = recipe.get_string("ppo.critic_init_from");
  if (c.critic_init_from.empty()) c.critic_init_from = c.reward_model.empty() ? c.init_from : c.reward_model;
  c.format_penalty = recipe.get_float("ppo.format_penalty");
  c.prompts_path = recipe.get_list("ppo.prompts_path");
  TS_CHECK(!c.prompts_path.empty(),
           "ppo.prompts_path is not set: give the chat JSONL files whose questions are the training prompts "
           "(scripts/make_arithmetic_chat.py writes them)");
  if (recipe.has("ppo.eval_prompts_path")) c.eval_prompts_path = recipe.get_list("ppo.eval_prompts_path");
  c.eval_prompts = recipe.get_int("ppo.eval_prompts");
  c.chat_template = recipe.get_string("data.chat_template");
  c.tokenizer_model = recipe.get_string("data.tokenizer_model");
  c.vocab_file = recipe.get_string("data.vocab_file");
  c.merge_file = recipe.get_string("data.merge_file");
  TS_CHECK(!c.tokenizer_model.empty() || (!c.vocab_file.empty() && !c.merge_file.empty()),
           "the recipe names no tokenizer: set data.tokenizer_model, or data.vocab_file and data.merge_file (the SFT "
           "run's)");

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

  c.steps = recipe.get_int("train.train_iters");
  c.eval_interval = recipe.get_int("train.eval_interval");
  c.log_interval = recipe.get_int("logging.log_interval");
  c.save = recipe.get_string("checkpoint.save");
  c.run_dir = recipe.get_string("logging.run_dir");
  TS_CHECK(c.model.hidden_dropout == 0.0, "model.hidden_dropout is ", c.model.hidden_dropout,
           ": PPO samples and scores without dropout; set model.hidden_dropout=0");
  const std::string device = recipe.get_string("train.device");
  const int gpus = cuda_device_count();
  TS_CHECK(device != "cuda" || gpus > 0, "train.device is cuda but no GPU is visible; use cpu or auto");
  c.device = device != "cpu" && gpus > 0 ? Device::cuda(0) : Device::cpu();
  c.dtype = c.device.is_cuda() && recipe.get_string("train.precision") == "bf16" ? DType::BF16 : DType::F32;
  return c;
}

}  // namespace tessera
