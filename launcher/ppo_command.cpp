#include "launcher/ppo_command.h"

#include <fmt/format.h>

#include <cstdio>
#include <filesystem>

#include "core/check.h"
#include "data/tokenizer.h"
#include "launcher/checkpoint_argument.h"
#include "launcher/checkpoint_directory.h"
#include "launcher/checkpoint_state.h"
#include "launcher/command_failure.h"
#include "launcher/lora_run.h"
#include "launcher/rollout_policy.h"
#include "launcher/rollout_run_loop.h"
#include "launcher/reward_model_trainer.h"
#include "launcher/world_communicator.h"
#include "parallel/mpi_communicator.h"
#include "posttrain/rewards.h"

namespace tessera {

namespace {

void check_exists(const std::string& path, const std::string& key, const std::string& fix) {
  TS_CHECK(std::filesystem::exists(path), key, " ", path, " does not exist: ", fix);
}

std::string step_line(const PpoStepStats& s, int64_t steps) {
  std::string line = fmt::format(
      "step {}/{} | reward {:.3f} | accuracy {:.3f} | kl {:.4f} | entropy {:.3f} | clip {:.3f} | policy loss {:.4f} "
      "| value loss {:.4f} | value clip {:.3f} | explained variance {:.3f} | response {:.1f} tokens | generation "
      "{:.0f} tokens/s | training {:.0f} tokens/s",
      s.step, steps, s.mean_reward, s.accuracy, s.kl, s.entropy, s.clip_fraction, s.policy_loss, s.value_loss,
      s.value_clip_fraction, s.explained_variance, s.response_length, s.generation_tokens_per_s,
      s.training_tokens_per_s);
  if (s.generation_peak_mib > 0)
    line += fmt::format(" | memory: generation peak {:.0f} MiB, {:.0f} MiB after its KV cache is freed",
                        s.generation_peak_mib, s.after_release_mib);
  return line;
}

std::string step_json(const PpoStepStats& s) {
  return fmt::format(
      "{{\"step\": {}, \"reward\": {}, \"accuracy\": {}, \"kl\": {}, \"entropy\": {}, \"clip_fraction\": {}, "
      "\"policy_loss\": {}, \"value_loss\": {}, \"value_clip_fraction\": {}, \"explained_variance\": {}, "
      "\"response_length\": {}, \"generation_tokens_per_s\": {}, \"training_tokens_per_s\": {}}}",
      s.step, s.mean_reward, s.accuracy, s.kl, s.entropy, s.clip_fraction, s.policy_loss, s.value_loss,
      s.value_clip_fraction, s.explained_variance, s.response_length, s.generation_tokens_per_s,
      s.training_tokens_per_s);
}

}  // namespace

CLI::App* add_ppo_subcommand(CLI::App& app, PpoCommandOptions& options) {
  CLI::App* command = app.add_subcommand(
      "ppo",
      "PPO (RLHF) from an SFT checkpoint: actor, critic, reference, reward model or programmatic reward "
      "(recipes/ppo_*.yaml)");
  command->add_option("recipe", options.recipe, "recipe YAML")->required()->check(CLI::ExistingFile);
  command->add_option("overrides", options.overrides, "section.key=value overrides");
  return command;
}

std::unique_ptr<RewardModel> load_ppo_critic(const std::string& checkpoint, const TransformerConfig& config,
                                             uint64_t seed, Device device, DType dtype) {
  const LoadedCheckpoint loaded = load_checkpoint_argument(checkpoint, "ppo (ppo.critic_init_from)");
  if (loaded.checkpoint.model.count("score.weight") > 0) return load_reward_model(loaded.path, device, dtype);
  auto critic = std::make_unique<RewardModel>(config, seed, ParamOptions{dtype, device});
  load_model_weights(loaded.checkpoint, loaded.path, critic->backbone());
  return critic;
}

PpoRunResult run_ppo(const PpoConfig& config, const std::string& resolved_yaml, Communicator* world,
                     const std::function<void(const std::string&)>& log) {
  const int64_t ranks = world != nullptr ? world->size() : 1;
  const bool leader = world == nullptr || world->rank() == 0;
  validate(config.trainer, ranks);
  check_exists(config.init_from, "ppo.init_from",
               "run the SFT recipe first (tessera train recipes/sft_arithmetic_gpt2.yaml) or point ppo.init_from at a "
               "checkpoint directory or file");
  if (!config.reward_model.empty())
    check_exists(config.reward_model, "ppo.reward_model",
                 "train one first (tessera reward-model recipes/reward_model_arithmetic_gpt2.yaml) or unset it and "
                 "use a programmatic ppo.reward");
  check_exists(config.critic_init_from, "ppo.critic_init_from", "point it at a reward model or LM checkpoint");
  RolloutData data(config);
  const Tokenizer& tokenizer = data.tokenizer;
  std::vector<GrpoPrompt>& prompts = data.prompts;
  const std::vector<GrpoPrompt>& held_out = data.held_out;

  PpoReward reward;
  std::unique_ptr<RewardModel> reward_model;
  if (!config.reward_model.empty()) {
    reward_model = load_reward_model(config.reward_model, config.device, config.dtype);
    TS_CHECK(tokenizer.vocab_size() <= reward_model->backbone().config().vocab_size, "ppo.reward_model ",
             config.reward_model, " has a vocabulary of ", reward_model->backbone().config().vocab_size,
             " but the tokenizer ", tokenizer.vocab_size(), " tokens: it must be trained on the actor's tokenizer");
    reward.model = reward_model.get();
  }
  if (config.reward != "none") {
    reward.function = reward_function_by_name(config.reward, {config.format_penalty});
    reward.correct = reward_function_by_name(config.reward, {});
  }

  LoadedCheckpoint loaded = load_checkpoint_argument(config.init_from, "ppo (ppo.init_from)");
  RolloutPolicy policy = load_rollout_policy(config, loaded, config.trainer.seed, config.trainer.kl_coef > 0);
  GptModel& actor = *policy.model;
  TransformerConfig critic_config = config.model;
  critic_config.lora = {};  // LoRA adapts the actor; the critic trains whole
  std::unique_ptr<RewardModel> critic =
      load_ppo_critic(config.critic_init_from, critic_config, config.trainer.seed, config.device, config.dtype);
  const std::string reward_name =
      config.reward_model.empty() ? config.reward
                                  : (config.reward == "none" ? "model " + config.reward_model
                                                             : "model " + config.reward_model + " + " + config.reward);
  log(
      fmt::format("tessera ppo: {} ({:.1f}M parameters) from {} (step {}) on {} x {}; critic from {}; {} prompts, {} "
                  "held out; {} prompts x {} samples per step, reward {}",
                  config.model.name, double(config.model.parameter_count()) / 1e6, loaded.path, loaded.checkpoint.step,
                  ranks, config.device.str(), config.critic_init_from, prompts.size(), held_out.size(),
                  config.trainer.prompts_per_step, config.trainer.samples_per_prompt, reward_name));

  PpoTrainer trainer(config.trainer, actor, *critic, std::move(policy.reference), reward, std::move(prompts), tokenizer,
                     ranks > 1 ? world : nullptr);
  if (policy.lora) {
    const LoraMemory memory = measure_lora_memory(actor, trainer.actor_optimizer().parameters(),
                                                  adamw_state_bytes(trainer.actor_optimizer()), /*grad_buffer_bytes=*/0);
    log(memory.describe());
    log(config.trainer.kl_coef > 0 ? memory.describe_reference() : "LoRA: no reference (ppo.kl_coef is 0)");
  }
  PpoRunResult result;
  run_rollout_steps(trainer, config, config.trainer.seed, held_out, leader, log, result,
                    [](const auto& stats) { return step_json(stats); },
                    [](const auto& stats, int64_t steps) { return step_line(stats, steps); });
  if (leader && !config.save.empty()) {
    const TrainingCheckpoint checkpoint = rollout_policy_checkpoint(policy, loaded, resolved_yaml, trainer.steps_taken());
    result.saved = save_checkpoint(config.save, checkpoint, /*keep_last=*/3, log).path;
    log("saved the actor to " + result.saved);
  }
  return result;
}

int run_ppo_command(const PpoCommandOptions& options, const MpiRuntime& runtime) {
  const LaunchContext launch = launch_context(runtime);
  try {
    const Recipe recipe = Recipe::load(options.recipe, options.overrides);
    PpoConfig config = ppo_config_from_recipe(recipe);
    if (config.device.is_cuda()) config.device = Device::cuda(launch.local_rank);
    const JobWorld job = make_job_world(launch.world_size, config.device);
    run_ppo(config, recipe.resolved_yaml(), job.world.get(), [&](const std::string& line) {
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
