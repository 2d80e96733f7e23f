// Everything a pretraining run needs, resolved from a recipe and checked for consistency
// before any work starts (batch sizes that do not divide, sequences longer than the model,
// missing data files, layouts this build cannot run): each problem is a one-line error that
// names the recipe key.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/device.h"
#include "launcher/recipe.h"
#include "models/transformer_config.h"
#include "optim/adamw.h"
#include "optim/lr_schedule.h"

namespace tessera {

enum class Precision { BF16, FP16, FP32 };

struct TrainConfig {
  TransformerConfig model;
  bool recompute = false;

  std::vector<std::string> data_path;  // Megatron --data-path words: PREFIX or WEIGHT PREFIX ...
  std::string split = "969,30,1";
  int64_t seq_length = 1024;
  int64_t num_workers = 2;

  AdamWOptions adamw;
  double clip_grad = 1.0;
  LrScheduleOptions schedule;

  int64_t micro_batch_size = 1;
  int64_t global_batch_size = 1;
  int64_t data_parallel_size = 1;
  int64_t train_iters = 1;
  int64_t eval_interval = 1000;
  int64_t eval_iters = 10;
  uint64_t seed = 1234;
  Precision precision = Precision::BF16;
  Device device = Device::cpu();
  std::string resume = "auto";
  std::optional<int64_t> exit_interval;  // steps this job runs before saving and exiting

  std::string save_dir;
  int64_t save_interval = 1000;
  int64_t keep_last = 3;
  int64_t log_interval = 1;
  std::string run_dir = "runs/latest";

  std::string resolved_yaml;  // the recipe with every default filled in

  int64_t grad_accumulation_steps() const { return global_batch_size / (micro_batch_size * data_parallel_size); }
  int64_t tokens_per_step() const { return global_batch_size * seq_length; }
};

// data_parallel_size comes from the launch (world size / model-parallel sizes).
TrainConfig train_config_from_recipe(const Recipe& recipe, int64_t data_parallel_size = 1);

// The model section alone (a preset with its overrides), validated; what generation rebuilds
// from the configuration a checkpoint saved.
TransformerConfig model_config_from_recipe(const Recipe& recipe);

}  // namespace tessera
