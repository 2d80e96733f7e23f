#include "launcher/preference_command.h"

#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

#include "launcher/command_failure.h"
#include "launcher/dpo_trainer.h"
#include "launcher/reward_model_trainer.h"
#include "launcher/world_communicator.h"
#include "parallel/mpi_communicator.h"

namespace tessera {
namespace {

CLI::App* add_subcommand(CLI::App& app, const char* name, const char* description, PreferenceCommandOptions& options) {
  CLI::App* command = app.add_subcommand(name, description);
  command->add_option("recipe", options.recipe, "recipe YAML (see recipes/)")->required();
  command->add_option("overrides", options.overrides, "section.key=value overrides, e.g. dpo.beta=0.2");
  return command;
}

std::string read_recipe(const std::string& path) {
  std::ifstream file(path);
  TS_CHECK(file.good(), "recipe ", path, " cannot be read (does it exist?)");
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

void train(PreferenceMethod method, const PreferenceRunConfig& config, Communicator* dp, bool logs) {
  PreferenceTrainer::Log log = [](const std::string& line) {
    fmt::print("{}\n", line);
    std::fflush(stdout);
  };
  std::unique_ptr<PreferenceTrainer> trainer;
  if (method == PreferenceMethod::kDpo) {
    trainer = std::make_unique<DpoTrainer>(config, log, dp);
  } else {
    trainer = std::make_unique<RewardModelTrainer>(config, log, dp);
  }
  const PreferenceResult result = trainer->run();
  if (!logs) return;
  const PreferenceMetrics& last = result.steps.back();
  std::string summary = fmt::format("done: {} steps; last step loss {:.4f}, accuracy {:.3f}, margin {:+.4f}",
                                    result.steps.size(), last.loss, last.accuracy, last.margin);
  if (!result.evaluations.empty()) {
    const PreferenceMetrics& v = result.evaluations.back();
    summary += fmt::format("; held-out accuracy {:.3f}, margin {:+.4f}", v.accuracy, v.margin);
  }
  if (!result.last_checkpoint.empty()) summary += "; saved " + result.last_checkpoint;
  log(summary);
}

}  // namespace

CLI::App* add_dpo_subcommand(CLI::App& app, PreferenceCommandOptions& options) {
  return add_subcommand(app, "dpo", "Align a model on preference pairs with DPO or IPO (recipe section dpo:)", options);
}

CLI::App* add_reward_model_subcommand(CLI::App& app, PreferenceCommandOptions& options) {
  return add_subcommand(app, "reward-model",
                        "Train a reward model (scalar head, Bradley-Terry loss) on preference pairs "
                        "(recipe section reward_model:)",
                        options);
}

int run_preference_command(PreferenceMethod method, const PreferenceCommandOptions& options,
                           const MpiRuntime& runtime) {
  const LaunchContext launch = launch_context(runtime);
  const bool logs = launch.rank == 0;
  PreferenceRunConfig config;
  try {
    config =
        preference_config_from_recipe(method, read_recipe(options.recipe), options.recipe, options.overrides, launch);
    check_world_backend(config.train.device, launch.world_size);
  } catch (const std::exception& e) {
    // Every rank read the same recipe and failed the same way: one line, from rank 0.
    if (logs) fmt::print(stderr, "tessera: error: {}\n", e.what());
    return 1;
  }
  if (logs) fmt::print("resolved configuration ({}):\n{}", options.recipe, config.train.resolved_yaml);
  try {
    const JobWorld job = make_job_world(launch.world_size, config.train.device);
    train(method, config, job.world.get(), logs);
  } catch (const std::exception& e) {
    return fail_command(launch, e);
  }
  return 0;
}

}  // namespace tessera
