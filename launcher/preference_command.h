// `tessera dpo RECIPE [section.key=value ...]` and `tessera reward-model RECIPE [...]`: load and
// validate the recipe (launcher/preference_config.h; every error before any work starts, printed
// as one line), print the resolved configuration, then train (DpoTrainer, RewardModelTrainer).
// One process, or every rank of mpirun / srun: the ranks are the data-parallel group (MPI is
// initialised by the caller for these subcommands). Configuration errors are the same on every
// rank: rank 0 prints them and every rank exits 1. A later error on one rank prints it naming the
// rank and aborts the job (the others may be waiting in a collective).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "launcher/preference_config.h"
#include "parallel/mpi_runtime.h"

namespace tessera {

struct PreferenceCommandOptions {
  std::string recipe;
  std::vector<std::string> overrides;
};

CLI::App* add_dpo_subcommand(CLI::App& app, PreferenceCommandOptions& options);
CLI::App* add_reward_model_subcommand(CLI::App& app, PreferenceCommandOptions& options);
// Returns the process's exit status; reports its errors itself.
int run_preference_command(PreferenceMethod method, const PreferenceCommandOptions& options, const MpiRuntime& runtime);

}  // namespace tessera
