#include "launcher/logits_command.h"

#include <fmt/format.h>

#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/check.h"
#include "core/cuda/runtime.h"
#include "data/npy_array.h"
#include "launcher/checkpoint_argument.h"
#include "launcher/checkpoint_state.h"
#include "launcher/recipe.h"
#include "launcher/safetensors.h"
#include "launcher/train_config.h"
#include "models/gpt_model.h"

namespace tessera {

namespace {

// The [B, T] token rows of `path`, checked against the model's vocabulary and positions.
Tensor read_token_rows(const std::string& path, const TransformerConfig& config) {
  NpyArray rows(path);
  TS_CHECK(rows.shape().size() == 2, "logits: ", path, " must hold token rows [B, T], got ", rows.shape().size(),
           " dims");
  TS_CHECK(rows.shape()[1] <= config.max_position_embeddings, "logits: ", path, " rows of ", rows.shape()[1],
           " tokens exceed the model's max_position_embeddings ", config.max_position_embeddings);
  std::vector<int64_t> tokens(static_cast<size_t>(rows.size()));
  for (int64_t i = 0; i < rows.size(); ++i) {
    tokens[size_t(i)] = rows[i];
    TS_CHECK(tokens[size_t(i)] >= 0 && tokens[size_t(i)] < config.vocab_size, "logits: ", path, " holds token ",
             tokens[size_t(i)], " at element ", i, ", outside the model's vocabulary of ", config.vocab_size);
  }
  return Tensor::from_vector(tokens, Shape{rows.shape()[0], rows.shape()[1]});
}

}  // namespace

CLI::App* add_logits_subcommand(CLI::App& app, LogitsCommandOptions& options) {
  CLI::App* command = app.add_subcommand("logits", "Write a checkpoint's logits for token rows (.npy) as safetensors");
  command->add_option("--checkpoint", options.checkpoint, "checkpoint file, or a checkpoint directory (its latest)")
      ->required();
  command->add_option("--tokens", options.tokens, "token rows [B, T] (.npy, int32 or int64)")->required();
  command->add_option("--output", options.output, "output .safetensors (tensor \"logits\" [B, T, V], f32)")
      ->required();
  command->add_option("--device", options.device, "cpu (f32) or cuda (bf16)")->capture_default_str();
  return command;
}

int run_logits_command(const LogitsCommandOptions& options) {
  TS_CHECK(options.device == "cpu" || options.device == "cuda", "logits: --device ", options.device,
           " is not one of cpu, cuda");
  TS_CHECK(options.device == "cpu" || cuda_device_count() > 0, "logits: --device cuda but no GPU is visible");
  LoadedCheckpoint loaded = load_checkpoint_argument(options.checkpoint, "logits");
  const TransformerConfig config =
      model_config_from_recipe(Recipe::parse(loaded.checkpoint.config_yaml, loaded.path + " (saved configuration)"));
  const Tensor tokens = read_token_rows(options.tokens, config);
  const Device device = options.device == "cuda" ? Device::cuda(0) : Device::cpu();
  GptModel model(config, /*seed=*/0, ParamOptions{device.is_cuda() ? DType::BF16 : DType::F32, device});
  load_model_weights(loaded.checkpoint, loaded.path, model);
  model.eval();
  NoGradGuard no_grad;
  Tensor logits = model.forward(tokens.to(device)).to(DType::F32).to(Device::cpu());
  write_safetensors(options.output, {{"logits", logits}});
  fmt::print("tessera logits: {} [{} x {}] tokens -> {} logits {} ({} from {})\n", options.tokens, tokens.size(0),
             tokens.size(1), options.output, shape_str(logits.shape()), config.name, loaded.path);
  return 0;
}

}  // namespace tessera
