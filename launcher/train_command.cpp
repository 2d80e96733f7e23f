#include "launcher/train_command.h"

#include <fmt/format.h>

#include <cstdio>

#include "launcher/recipe.h"
#include "launcher/train_config.h"
#include "launcher/trainer.h"

namespace tessera {

CLI::App* add_train_subcommand(CLI::App& app, TrainCommandOptions& options) {
  CLI::App* train = app.add_subcommand("train", "Pretrain a GPT or Llama model from a recipe YAML");
  train->add_option("recipe", options.recipe, "recipe YAML (see recipes/)")->required();
  train->add_option("overrides", options.overrides, "section.key=value overrides, e.g. train.train_iters=100");
  return train;
}

int run_train_command(const TrainCommandOptions& options) {
  Recipe recipe = Recipe::load(options.recipe, options.overrides);
  TrainConfig config = train_config_from_recipe(recipe);
  fmt::print("resolved configuration ({}):\n{}", options.recipe, config.resolved_yaml);
  Trainer trainer(config, [](const std::string& line) {
    fmt::print("{}\n", line);
    std::fflush(stdout);
  });
  trainer.run();
  return 0;
}

}  // namespace tessera
