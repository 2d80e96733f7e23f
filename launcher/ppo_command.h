// `tessera ppo RECIPE [section.key=value ...]`: PPO (RLHF) from an SFT checkpoint with a critic, a
// frozen reference and a reward model and/or a programmatic reward (launcher/ppo_trainer.h; the
// recipe keys: launcher/ppo_config.h; docs/ppo.md). One process, or every rank of mpirun / srun
// (data parallelism: each rank samples its own prompts, gradients are summed). Prints one line
// per logging.log_interval steps (reward, accuracy, KL, entropy, clip fractions, policy and value
// losses, explained variance, response length, generation and training tokens/s, and on a GPU
// the memory generation peaked at and what is left once its KV cache is freed), evaluates
// greedily on the held-out prompts before the first step, every train.eval_interval steps and
// after the last, writes RUN_DIR/metrics.jsonl and saves the final actor as
// checkpoint.save/iter_NNNNNNN.h5 (what `tessera generate` and `tessera export` read).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "launcher/ppo_config.h"
#include "parallel/communicator.h"
#include "parallel/mpi_runtime.h"

namespace tessera {

struct PpoCommandOptions {
  std::string recipe;
  std::vector<std::string> overrides;
};

struct PpoRunResult {
  std::vector<PpoStepStats> steps;
  std::vector<std::pair<int64_t, PpoEvalStats>> evaluations;  // (steps taken, held-out result)
  std::string saved;                                          // the checkpoint file, or empty
};

CLI::App* add_ppo_subcommand(CLI::App& app, PpoCommandOptions& options);
int run_ppo_command(const PpoCommandOptions& options, const MpiRuntime& runtime);

// The critic from `checkpoint`: a reward model's checkpoint (score.weight present) is loaded
// whole, in its own configuration; an LM checkpoint initialises the backbone of a critic of
// `config` whose value head starts fresh (from `seed`).
std::unique_ptr<RewardModel> load_ppo_critic(const std::string& checkpoint, const TransformerConfig& config,
                                             uint64_t seed, Device device, DType dtype);

// The run itself on this process: `world` connects the data-parallel ranks (null: one process),
// `resolved_yaml` is saved with the checkpoint, `log` hears each line (rank 0 prints them).
PpoRunResult run_ppo(const PpoConfig& config, const std::string& resolved_yaml, Communicator* world,
                     const std::function<void(const std::string&)>& log);

}  // namespace tessera
