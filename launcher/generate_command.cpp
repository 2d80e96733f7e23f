#include "launcher/generate_command.h"

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "core/check.h"
#include "core/cuda/runtime.h"
#include "data/tokenizer.h"
#include "launcher/checkpoint_argument.h"
#include "launcher/checkpoint_state.h"
#include "launcher/recipe.h"
#include "launcher/train_config.h"
#include "models/generation.h"

namespace tessera {

namespace {

Tokenizer load_tokenizer(const GenerateCommandOptions& options, const Recipe& recipe, const std::string& source) {
  if (!options.tokenizer.empty()) return Tokenizer::load(options.tokenizer);
  const std::string model_file = recipe.get_string("data.tokenizer_model");
  if (!model_file.empty()) return Tokenizer::load(model_file);
  const std::string vocab = recipe.get_string("data.vocab_file"), merges = recipe.get_string("data.merge_file");
  TS_CHECK(!vocab.empty() && !merges.empty(), "generate: the configuration saved in ", source,
           " names no tokenizer (data.tokenizer_model, or data.vocab_file and data.merge_file); pass --tokenizer "
           "PATH (a tokenizer.json or a folder of tokenizer files)");
  return Tokenizer::load(std::filesystem::path(vocab), std::filesystem::path(merges));
}

Device pick_device(const std::string& name) {
  TS_CHECK(name == "auto" || name == "cpu" || name == "cuda", "generate: --device ", name,
           " is not one of auto, cpu, cuda");
  const int gpus = cuda_device_count();
  TS_CHECK(name != "cuda" || gpus > 0, "generate: --device cuda but no GPU is visible; use cpu or auto");
  return name != "cpu" && gpus > 0 ? Device::cuda(0) : Device::cpu();
}

GenerationOptions generation_options(const GenerateCommandOptions& options, const Tokenizer& tokenizer) {
  GenerationOptions g;
  g.max_new_tokens = options.max_new_tokens;
  g.sampling = {options.temperature, options.top_k, options.top_p};
  validate(g.sampling);
  g.use_cache = !options.no_kv_cache;
  for (const std::string& text : options.stop) {
    std::vector<int32_t> ids = tokenizer.encode(text, SpecialTokens::kRecognize);
    TS_CHECK(!ids.empty(), "generate: --stop needs a non-empty text");
    g.stop_sequences.push_back(std::move(ids));
  }
  try {
    g.stop_sequences.push_back({tokenizer.eod_id()});
  } catch (const Error&) {
    // A tokenizer without an end-of-text token: rows end at --stop or --max-new-tokens.
  }
  return g;
}

}  // namespace

CLI::App* add_generate_subcommand(CLI::App& app, GenerateCommandOptions& options) {
  CLI::App* command = app.add_subcommand("generate", "Continue prompts with a model from a training checkpoint");
  command->add_option("--checkpoint", options.checkpoint, "checkpoint file, or a checkpoint directory (its latest)")
      ->required();
  command->add_option("--prompt", options.prompts, "prompt text (repeat for a batch)")
      ->required()
      ->allow_extra_args(false);
  command->add_option("--tokenizer", options.tokenizer,
                      "tokenizer.json or a folder of tokenizer files (default: "
                      "the recipe's data.tokenizer_model or data.vocab_file + data.merge_file)");
  command->add_option("--max-new-tokens", options.max_new_tokens, "tokens to generate per prompt")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  command->add_option("--temperature", options.temperature, "softmax temperature; 0 = greedy")->capture_default_str();
  command->add_option("--top-k", options.top_k, "keep the k most likely tokens (0 = all)")->capture_default_str();
  command->add_option("--top-p", options.top_p, "keep the most likely tokens up to this probability (1 = all)")
      ->capture_default_str();
  command->add_option("--seed", options.seed, "sampling seed")->capture_default_str();
  command->add_option("--stop", options.stop, "stop a prompt's continuation at this text (repeatable)")
      ->allow_extra_args(false);
  command->add_option("--device", options.device, "auto, cpu or cuda")->capture_default_str();
  command->add_flag("--no-kv-cache", options.no_kv_cache, "recompute the whole sequence for every token (slow)");
  return command;
}

int run_generate_command(const GenerateCommandOptions& options) {
  LoadedCheckpoint loaded = load_checkpoint_argument(options.checkpoint, "generate");
  const Recipe recipe = Recipe::parse(loaded.checkpoint.config_yaml, loaded.path + " (saved configuration)");
  const TransformerConfig config = model_config_from_recipe(recipe);
  const Tokenizer tokenizer = load_tokenizer(options, recipe, loaded.path);
  TS_CHECK(tokenizer.vocab_size() <= config.vocab_size, "generate: the tokenizer's ", tokenizer.vocab_size(),
           " tokens do not fit the model's vocabulary of ", config.vocab_size, " (a tokenizer other than training's?)");
  const GenerationOptions generation = generation_options(options, tokenizer);
  std::vector<std::vector<int32_t>> prompts;
  for (const std::string& text : options.prompts) prompts.push_back(tokenizer.encode(text, SpecialTokens::kRecognize));

  const Device device = pick_device(options.device);
  GptModel model(config, /*seed=*/0, ParamOptions{device.is_cuda() ? DType::BF16 : DType::F32, device});
  load_model_weights(loaded.checkpoint, loaded.path, model);
  model.eval();
  fmt::print(
      "tessera generate: {} ({:.1f}M parameters, step {}) from {} on {}; temperature {}, top-k {}, top-p {}, "
      "seed {}\n",
      config.name, double(config.parameter_count()) / 1e6, loaded.checkpoint.step, loaded.path, device.str(),
      options.temperature, options.top_k, options.top_p, options.seed);

  Generator generator(options.seed);
  const auto start = std::chrono::steady_clock::now();
  const std::vector<std::vector<int32_t>> outputs = generate(model, prompts, generation, generator);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  size_t tokens = 0;
  for (size_t i = 0; i < outputs.size(); ++i) {
    fmt::print("--- prompt {} ---\n{}{}\n", i + 1, options.prompts[i], tokenizer.decode(outputs[i]));
    tokens += outputs[i].size();
  }
  fmt::print("--- {} new tokens in {:.2f} s ({:.1f} tokens/s{})\n", tokens, seconds, double(tokens) / seconds,
             generation.use_cache ? "" : ", without KV cache");
  std::fflush(stdout);
  return 0;
}

}  // namespace tessera
