// `tessera autoconfig --model PRESET|RECIPE --gpus N [--gpus-per-node G] [--gpu TYPE]
// [--seq-len S] [--global-batch B] [--workload pretrain|sft|lora|dpo|ppo] [--top K] [--output FILE]`:
// searches the parallel layouts the trainer can run (autoconfig/layout_search.h), prints the
// top K with predicted memory per GPU, step time, tokens/s and MFU, and writes the fastest as a
// recipe for `tessera train` on N ranks. A recipe as --model keeps everything it sets (data,
// optimizer, ...) and takes its sequence length and global batch unless the options give them;
// a preset gets a recipe whose data.data_path must be set before training. Only pretraining has
// a trainer recipe today: for the post-training workloads the table is printed, no file written.
// Bad input (unknown GPU or preset, a GPU count with no valid layout, a model that fits nowhere)
// is a one-line error saying what to change.
//
// --measure (NeMo's auto-configurator does the same): each of the top K is trained for
// --measure-steps steps on the hardware at hand (`tessera train` in a child process, started
// through --launcher with {gpus} replaced by the GPU count; one GPU runs without a launcher), from
// the recipe with its data, and the K are re-ranked by measured tokens/s (the median over the steps
// after the first); the fastest measured layout is the one written. A layout whose run fails (out
// of memory, say) ranks last with the failure's last log line. Needs a recipe with data as --model.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "autoconfig/layout_search.h"

namespace tessera {

struct AutoconfigCommandOptions {
  std::string model;  // a preset name or a recipe YAML path
  int gpus = 0;
  int gpus_per_node = 8;
  std::string gpu = "h100-80gb";
  int64_t seq_len = 0;       // 0: the recipe's data.seq_length, or 2048 for a preset
  int64_t global_batch = 0;  // 0: the recipe's train.global_batch_size, or required for a preset
  std::string workload = "pretrain";
  int64_t lora_rank = 16;
  size_t top = 5;
  std::string output = "autoconfig.yaml";
  std::string hardware_dir;  // empty: autoconfig::default_hardware_dir()
  bool measure = false;
  int measure_steps = 5;
  std::string launcher = "mpirun -np {gpus}";
  std::string tessera_executable;  // empty: this program (/proc/self/exe)
};

// One measured layout of --measure.
struct MeasuredLayout {
  autoconfig::Evaluated predicted;
  double tokens_per_second = 0;  // 0 when the run failed
  double peak_memory_bytes = 0;  // the largest per-step peak the run logged (the memory model's check)
  std::string failure;           // the failed run's last log line
};

struct AutoconfigOutcome {
  autoconfig::SearchResult result;
  std::vector<MeasuredLayout> measured;  // --measure: the top K, fastest measured first
  std::string table;                     // what the command prints
  std::string recipe_yaml;               // the best layout's recipe; empty for workloads without a trainer recipe
};

CLI::App* add_autoconfig_subcommand(CLI::App& app, AutoconfigCommandOptions& options);
// The search and the recipe text, without printing or writing (the command and tests use it).
AutoconfigOutcome autoconfigure(const AutoconfigCommandOptions& options);
int run_autoconfig_command(const AutoconfigCommandOptions& options);

}  // namespace tessera
