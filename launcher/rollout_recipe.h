// What `tessera grpo` and `tessera ppo` read alike from a recipe: the model section (it must
// describe the checkpoint SECTION.init_from holds), SECTION.init_from, the prompts
// (SECTION.prompts_path, eval_prompts_path, eval_prompts), the programmatic reward
// (SECTION.reward, format_penalty), the tokenizer and chat template (data.*), the run's length and
// outputs (train.train_iters, train.eval_interval, logging.log_interval, logging.run_dir,
// checkpoint.save), and the device and parameter dtype (train.device, train.precision).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "data/chat_template.h"
#include "data/tokenizer.h"
#include "launcher/grpo_prompts.h"
#include "launcher/recipe.h"
#include "models/transformer_config.h"

namespace tessera {

struct RolloutRunConfig {
  TransformerConfig model;
  std::string init_from;  // the policy's (and the reference's) starting checkpoint
  std::vector<std::string> prompts_path, eval_prompts_path;
  int64_t eval_prompts = 0;           // 0: all
  std::string reward = "arithmetic";  // a programmatic reward (ppo also takes "none")
  double format_penalty = 0.0;
  std::string chat_template = "gpt2";
  std::string tokenizer_model, vocab_file, merge_file;  // data.*
  int64_t steps = 1;
  int64_t eval_interval = 1000;
  int64_t log_interval = 1;
  Device device = Device::cpu();
  DType dtype = DType::F32;  // parameters: bf16 on a GPU with train.precision bf16, else f32
  std::string save, run_dir;
};

// Reads the fields above from `section` ("grpo", "ppo"); `method` ("GRPO") names the run in
// messages. Throws a one-line reason naming the key (a missing init_from or prompts_path, no
// tokenizer, dropout, a cuda device without a GPU) before any work.
RolloutRunConfig rollout_run_config(const Recipe& recipe, std::string_view section, std::string_view method,
                                    std::string_view policy);

// The tokenizer (data.tokenizer_model, or vocab_file and merge_file; it must fit the model's
// vocabulary), the chat template and the training and held-out prompts of a rollout run. Not
// copyable: the template refers to the tokenizer.
struct RolloutData {
  explicit RolloutData(const RolloutRunConfig& config);
  RolloutData(const RolloutData&) = delete;
  RolloutData& operator=(const RolloutData&) = delete;

  Tokenizer tokenizer;
  ChatTemplate chat_template;
  std::vector<GrpoPrompt> prompts, held_out;
};

}  // namespace tessera
