// `tessera train RECIPE [section.key=value ...]`: loads and validates the recipe (every error
// before any work starts), prints the resolved configuration, and runs the pretraining loop.
//
// Under mpirun / srun every rank runs this. First the ranks agree on their world
// (launcher/world_agreement.h): the world Slurm started, every rank's node and local rank, the
// resolved recipe's hash; a rank that cannot reach the others within --connect-timeout seconds
// prints an error naming its node and exits 1 (srun --kill-on-bad-exit / mpirun end the job).
// The layout (parallel.*) is checked against the world size on every rank before anything is
// allocated; if any rank finds a problem, the lowest such rank prints its one-line error and every
// rank exits with status 1 (nothing is written).
// Later errors may hit one rank while the others wait in a collective, so that rank prints its
// error, naming itself, and aborts the whole job. Only global rank 0 prints progress.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "parallel/mpi_runtime.h"

namespace tessera {

struct TrainCommandOptions {
  std::string recipe;
  std::vector<std::string> overrides;
  double connect_timeout_seconds = 120.0;  // the world agreement's exchange (multi-rank runs)
};

CLI::App* add_train_subcommand(CLI::App& app, TrainCommandOptions& options);
// Returns the process's exit status; reports its errors itself.
int run_train_command(const TrainCommandOptions& options, const MpiRuntime& runtime);

}  // namespace tessera
