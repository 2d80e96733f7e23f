// `tessera grpo RECIPE [section.key=value ...]`: GRPO from an SFT checkpoint with a programmatic
// reward (launcher/grpo_trainer.h; the recipe keys: launcher/grpo_config.h; docs/grpo.md). One
// process, or every rank of mpirun / srun (data parallelism: each rank samples its own prompts,
// gradients are summed). Prints one line per logging.log_interval steps (reward, accuracy, KL,
// entropy, clip fraction, response length, generation and training tokens/s, and on a GPU the
// memory generation peaked at and what is left once its caches are freed), evaluates on the
// held-out prompts before the first step, every train.eval_interval steps and after the last,
// writes RUN_DIR/metrics.jsonl and saves the final policy as checkpoint.save/iter_NNNNNNN.h5
// (what `tessera generate` and `tessera export` read). With a lora section the policy is
// grpo.init_from's model frozen plus adapters, the reference that model with its adapters off (no
// copy; a memory line says so), and the checkpoint holds the adapters alone with lora.base set to
// grpo.init_from's checkpoint in its recipe, so `tessera export` merges them.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "launcher/grpo_config.h"
#include "parallel/communicator.h"
#include "parallel/mpi_runtime.h"

namespace tessera {

struct GrpoCommandOptions {
  std::string recipe;
  std::vector<std::string> overrides;
};

struct GrpoRunResult {
  std::vector<GrpoStepStats> steps;
  std::vector<std::pair<int64_t, GrpoEvalStats>> evaluations;  // (steps taken, held-out result)
  std::string saved;                                           // the checkpoint file, or empty
};

CLI::App* add_grpo_subcommand(CLI::App& app, GrpoCommandOptions& options);
int run_grpo_command(const GrpoCommandOptions& options, const MpiRuntime& runtime);

// The run itself on this process: `world` connects the data-parallel ranks (null: one process),
// `resolved_yaml` is saved with the checkpoint, `log` hears each line (rank 0 prints them).
GrpoRunResult run_grpo(const GrpoConfig& config, const std::string& resolved_yaml, Communicator* world,
                       const std::function<void(const std::string&)>& log);

}  // namespace tessera
