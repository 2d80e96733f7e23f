// `tessera train RECIPE [section.key=value ...]`: loads and validates the recipe (every error
// before any work starts), prints the resolved configuration, and runs the pretraining loop.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace tessera {

struct TrainCommandOptions {
  std::string recipe;
  std::vector<std::string> overrides;
};

CLI::App* add_train_subcommand(CLI::App& app, TrainCommandOptions& options);
int run_train_command(const TrainCommandOptions& options);

}  // namespace tessera
