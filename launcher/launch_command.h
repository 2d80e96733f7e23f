// `tessera launch RECIPE [section.key=value ...] --nodes N --gpus-per-node G [--partition P
// --account A --time T --sweep FILE --dry-run | --local]`: runs a recipe on N x G ranks.
//   1. Validates the recipe (and every sweep line) for a world of N x G ranks, G per node, before
//      anything is written: the same checks and one-line errors as `tessera train`.
//   2. Slurm: writes RUN_DIR/slurm/job.sbatch from the template slurm/tessera.sbatch.in (srun
//      --mpi=pmix, one task per GPU, the preemption warning and requeue, logs in RUN_DIR/slurm/)
//      and submits it with sbatch (--wait: waits for the job and returns its exit status);
//      --dry-run prints the script instead and writes nothing.
//      RUN_DIR is the recipe's logging.run_dir.
//   3. --local: the same job(s) with mpirun on this machine (N x G ranks), one after another;
//      with --dry-run, prints the mpirun commands.
// A sweep file holds one job per line (whitespace-separated overrides; '#' comments and blank
// lines skipped): the jobs are one job array. Each job gets logging.run_dir RUN_DIR/sweep-<i>
// (and checkpoint.save SAVE/sweep-<i>) unless its line sets them.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace tessera {

struct LaunchCommandOptions {
  std::string recipe;
  std::vector<std::string> overrides;
  int nodes = 1;
  int gpus_per_node = 8;
  std::string partition, account, time, job_name;
  int cpus_per_task = 0;
  int signal_seconds = 300;
  double connect_timeout_seconds = 120;
  std::string sweep;          // the sweep file, or empty
  std::string template_path;  // empty: slurm/tessera.sbatch.in next to the executable's source tree
  bool dry_run = false;
  bool wait = false;  // sbatch --wait
  bool local = false;
};

CLI::App* add_launch_subcommand(CLI::App& app, LaunchCommandOptions& options);
// Returns the exit status (sbatch's or the last failing mpirun's); throws tessera::Error on bad input.
int run_launch_command(const LaunchCommandOptions& options);

}  // namespace tessera
