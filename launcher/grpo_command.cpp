#include "launcher/grpo_command.h"

#include <fmt/format.h>

#include <cstdio>
#include <filesystem>

#include "core/check.h"
#include "data/tokenizer.h"
#include "launcher/checkpoint_argument.h"
#include "launcher/checkpoint_directory.h"
#include "launcher/checkpoint_state.h"
#include "launcher/command_failure.h"
#include "launcher/rollout_policy.h"
#include "launcher/rollout_run_loop.h"
#include "launcher/lora_run.h"
#include "launcher/recipe.h"
#include "launcher/world_communicator.h"
#include "models/lora.h"
#include "parallel/mpi_communicator.h"
#include "posttrain/rewards.h"

namespace tessera {

namespace {

std::string step_line(const GrpoStepStats& s, int64_t steps) {
  std::string line = fmt::format(
      "step {}/{} | reward {:.3f} | accuracy {:.3f} | kl {:.4f} | entropy {:.3f} | clip {:.3f} | loss {:.4f} | "
      "response {:.1f} tokens | generation {:.0f} tokens/s | training {:.0f} tokens/s",
      s.step, steps, s.mean_reward, s.accuracy, s.kl, s.entropy, s.clip_fraction, s.loss, s.response_length,
      s.generation_tokens_per_s, s.training_tokens_per_s);
  if (s.generation_peak_mib > 0)
    line += fmt::format(" | memory: generation peak {:.0f} MiB, {:.0f} MiB after its KV cache is freed",
                        s.generation_peak_mib, s.after_release_mib);
  return line;
}

std::string step_json(const GrpoStepStats& s) {
  return fmt::format(
      "{{\"step\": {}, \"reward\": {}, \"accuracy\": {}, \"kl\": {}, \"entropy\": {}, \"clip_fraction\": {}, "
      "\"loss\": {}, \"response_length\": {}, \"generation_tokens_per_s\": {}, \"training_tokens_per_s\": {}}}",
      s.step, s.mean_reward, s.accuracy, s.kl, s.entropy, s.clip_fraction, s.loss, s.response_length,
      s.generation_tokens_per_s, s.training_tokens_per_s);
}

}  // namespace

CLI::App* add_grpo_subcommand(CLI::App& app, GrpoCommandOptions& options) {
  CLI::App* command =
      app.add_subcommand("grpo", "GRPO from an SFT checkpoint with a programmatic reward (recipes/grpo_*.yaml)");
  command->add_option("recipe", options.recipe, "recipe YAML")->required()->check(CLI::ExistingFile);
  command->add_option("overrides", options.overrides, "section.key=value overrides");
  return command;
}

GrpoRunResult run_grpo(const GrpoConfig& config, const std::string& resolved_yaml, Communicator* world,
                       const std::function<void(const std::string&)>& log) {
  const int64_t ranks = world != nullptr ? world->size() : 1;
  const bool leader = world == nullptr || world->rank() == 0;
  validate(config.trainer, ranks);
  TS_CHECK(std::filesystem::exists(config.init_from), "grpo.init_from ", config.init_from,
           " does not exist: run the SFT recipe first (tessera train recipes/sft_arithmetic_gpt2.yaml) or point "
           "grpo.init_from at a checkpoint directory or file");
  RolloutData data(config);
  const Tokenizer& tokenizer = data.tokenizer;
  std::vector<GrpoPrompt>& prompts = data.prompts;
  const std::vector<GrpoPrompt>& held_out = data.held_out;
  const RewardFunction reward = reward_function_by_name(config.reward, {config.format_penalty});
  const RewardFunction correct = reward_function_by_name(config.reward, {});

  LoadedCheckpoint loaded = load_checkpoint_argument(config.init_from, "grpo (grpo.init_from)");
  RolloutPolicy rollout_policy = load_rollout_policy(config, loaded, config.trainer.seed, config.trainer.kl_coef > 0);
  GptModel& policy = *rollout_policy.model;
  const bool lora = rollout_policy.lora;
  log(
      fmt::format("tessera grpo: {} ({:.1f}M parameters) from {} (step {}) on {} x {}; {} prompts, {} held out; "
                  "{} prompts x {} samples per step, reward {}",
                  config.model.name, double(config.model.parameter_count()) / 1e6, loaded.path, loaded.checkpoint.step,
                  ranks, config.device.str(), prompts.size(), held_out.size(), config.trainer.prompts_per_step,
                  config.trainer.group_size, config.reward));

  GrpoTrainer trainer(config.trainer, policy, std::move(rollout_policy.reference), reward, correct, std::move(prompts), tokenizer,
                      ranks > 1 ? world : nullptr);
  if (lora) {
    const LoraMemory memory = measure_lora_memory(policy, trainer.optimizer().parameters(),
                                                  adamw_state_bytes(trainer.optimizer()), /*grad_buffer_bytes=*/0);
    log(memory.describe());
    log(config.trainer.kl_coef > 0 ? memory.describe_reference() : "LoRA: no reference (grpo.kl_coef is 0)");
  }
  GrpoRunResult result;
  run_rollout_steps(trainer, config, config.trainer.seed, held_out, leader, log, result,
                    [](const auto& stats) { return step_json(stats); },
                    [](const auto& stats, int64_t steps) { return step_line(stats, steps); });
  if (leader && !config.save.empty()) {
    const TrainingCheckpoint checkpoint =
        rollout_policy_checkpoint(rollout_policy, loaded, resolved_yaml, trainer.steps_taken());
    result.saved = save_checkpoint(config.save, checkpoint, /*keep_last=*/3, log).path;
    log("saved the policy to " + result.saved);
  }
  return result;
}

int run_grpo_command(const GrpoCommandOptions& options, const MpiRuntime& runtime) {
  const LaunchContext launch = launch_context(runtime);
  try {
    const Recipe recipe = Recipe::load(options.recipe, options.overrides);
    GrpoConfig config = grpo_config_from_recipe(recipe);
    if (config.device.is_cuda()) config.device = Device::cuda(launch.local_rank);
    const JobWorld job = make_job_world(launch.world_size, config.device);
    run_grpo(config, recipe.resolved_yaml(), job.world.get(), [&](const std::string& line) {
      if (launch.rank != 0) return;
      fmt::print("{}\n", line);
      std::fflush(stdout);
    });
  } catch (const std::exception& e) {
    return fail_command(launch, e);
  }
  return 0;
}

}  // namespace tessera
