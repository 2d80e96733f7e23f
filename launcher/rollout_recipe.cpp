#include "launcher/rollout_recipe.h"

#include <filesystem>

#include "core/check.h"
#include "core/cuda/runtime.h"
#include "launcher/train_config.h"

namespace tessera {

RolloutRunConfig rollout_run_config(const Recipe& recipe, std::string_view section, std::string_view method,
                                    std::string_view policy) {
  const std::string s(section);
  auto key = [&s](const char* name) { return s + "." + name; };
  RolloutRunConfig c;
  c.model = model_config_from_recipe(recipe);
  c.init_from = recipe.get_string(key("init_from"));
  TS_CHECK(!c.init_from.empty(), key("init_from"), " is not set: point it at the checkpoint (directory or file) of ",
           "the SFT run the ", policy, " starts from, e.g. ", key("init_from"), "=checkpoints/sft_arithmetic_gpt2");
  // With LoRA the policy is init_from's model as the frozen base plus adapters, and the KL
  // reference is that base with the adapters off (launcher/rollout_policy.h).
  const std::string lora_base = recipe.get_string("lora.base");
  TS_CHECK(!c.model.lora.enabled() || lora_base.empty() || lora_base == c.init_from, recipe.origin("lora.base"),
           ": lora.base = ", lora_base, ", but with LoRA in ", s, " the frozen base is ", key("init_from"), " (",
           c.init_from, "); drop lora.base");
  c.prompts_path = recipe.get_list(key("prompts_path"));
  TS_CHECK(!c.prompts_path.empty(), key("prompts_path"),
           " is not set: give the chat JSONL files whose questions are the training prompts "
           "(scripts/make_arithmetic_chat.py writes them)");
  if (recipe.has(key("eval_prompts_path"))) c.eval_prompts_path = recipe.get_list(key("eval_prompts_path"));
  c.eval_prompts = recipe.get_int(key("eval_prompts"));
  c.reward = recipe.get_string(key("reward"));
  c.format_penalty = recipe.get_float(key("format_penalty"));
  c.chat_template = recipe.get_string("data.chat_template");
  c.tokenizer_model = recipe.get_string("data.tokenizer_model");
  c.vocab_file = recipe.get_string("data.vocab_file");
  c.merge_file = recipe.get_string("data.merge_file");
  TS_CHECK(!c.tokenizer_model.empty() || (!c.vocab_file.empty() && !c.merge_file.empty()),
           "the recipe names no tokenizer: set data.tokenizer_model, or data.vocab_file and data.merge_file (the SFT "
           "run's)");
  c.steps = recipe.get_int("train.train_iters");
  c.eval_interval = recipe.get_int("train.eval_interval");
  c.log_interval = recipe.get_int("logging.log_interval");
  c.save = recipe.get_string("checkpoint.save");
  c.run_dir = recipe.get_string("logging.run_dir");
  TS_CHECK(c.model.hidden_dropout == 0.0, "model.hidden_dropout is ", c.model.hidden_dropout, ": ", method,
           " samples and scores without dropout; set model.hidden_dropout=0");
  const std::string device = recipe.get_string("train.device");
  const int gpus = cuda_device_count();
  TS_CHECK(device != "cuda" || gpus > 0, "train.device is cuda but no GPU is visible; use cpu or auto");
  c.device = device != "cpu" && gpus > 0 ? Device::cuda(0) : Device::cpu();
  c.dtype = c.device.is_cuda() && recipe.get_string("train.precision") == "bf16" ? DType::BF16 : DType::F32;
  return c;
}

namespace {

Tokenizer load_rollout_tokenizer(const RolloutRunConfig& c) {
  if (!c.tokenizer_model.empty()) return Tokenizer::load(c.tokenizer_model);
  return Tokenizer::load(std::filesystem::path(c.vocab_file), std::filesystem::path(c.merge_file));
}

}  // namespace

RolloutData::RolloutData(const RolloutRunConfig& config)
    : tokenizer(load_rollout_tokenizer(config)), chat_template(ChatTemplate::for_family(config.chat_template, tokenizer)) {
  TS_CHECK(tokenizer.vocab_size() <= config.model.vocab_size, "the tokenizer's ", tokenizer.vocab_size(),
           " tokens do not fit the model's vocabulary of ", config.model.vocab_size,
           " (data.* must name the SFT run's tokenizer)");
  prompts = read_grpo_prompts(config.prompts_path, chat_template);
  if (config.eval_prompts_path.empty()) return;
  held_out = read_grpo_prompts(config.eval_prompts_path, chat_template);
  if (config.eval_prompts > 0 && int64_t(held_out.size()) > config.eval_prompts) held_out.resize(config.eval_prompts);
}

}  // namespace tessera
