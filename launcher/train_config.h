// Everything a pretraining run needs, resolved from a recipe and the launch (world size, local
// rank) and checked for consistency before any work starts (batch sizes that do not divide,
// sequences longer than the model, missing data files, parallel layouts that do not fit the
// world or the model, layouts this build cannot run yet): each problem is a one-line error that
// names the recipe key. The parallel layout follows Megatron: data_parallel_size is what is
// left of the world after the model-parallel sizes, world / (tp x pp x cp).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/device.h"
#include "launcher/recipe.h"
#include "models/transformer_config.h"
#include "optim/adamw.h"
#include "optim/lr_schedule.h"
#include "parallel/pipeline_layout.h"
#include "parallel/pipeline_schedule.h"
#include "parallel/mpi_runtime.h"
#include "parallel/process_groups.h"

namespace tessera {

enum class Precision { BF16, FP16, FP32 };

// Supervised fine-tuning data (data.sft_*): chat JSONL rendered with a chat template, packed
// into rows with a loss mask and document lengths (data/sft_dataset.h), tokenized with the
// recipe's tokenizer.
struct SftDataConfig {
  std::vector<std::string> train_paths, valid_paths;
  std::string chat_template = "gpt2";
  std::string packing = "first_fit";
  std::string overflow = "skip";
  std::string tokenizer_model, vocab_file, merge_file;  // the recipe's tokenizer
  bool enabled() const { return !train_paths.empty(); }
};

struct TrainConfig {
  TransformerConfig model;
  bool recompute = false;

  std::vector<std::string> data_path;  // Megatron --data-path words: PREFIX or WEIGHT PREFIX ...
  SftDataConfig sft;                   // instead of data_path when sft.enabled()
  std::string split = "969,30,1";
  int64_t seq_length = 1024;
  int64_t num_workers = 2;

  AdamWOptions adamw;
  double clip_grad = 1.0;
  LrScheduleOptions schedule;

  ParallelLayout layout;  // tp, pp, dp, cp of the launch (dp = world / (tp x pp x cp))
  bool sequence_parallel = false;
  // Pipeline parallelism (layout.pp > 1): which layers each (stage, chunk) holds, validated
  // against the model when the config is built, and the schedule (its num_microbatches is
  // grad_accumulation_steps()).
  PipelineLayoutOptions pipeline;
  PipelineScheduleKind pipeline_schedule = PipelineScheduleKind::OneFOneB;
  bool pipeline_trace = false;  // logging.pipeline_trace: Chrome trace of the first step in run_dir
  double ddp_bucket_size_mb = 40.0;  // DistributedDataParallel's gradient bucket target
  // Data-parallel gradient dtype (DdpOptions/FsdpOptions::grad_dtype): f32, or bf16 with
  // parallel.grad_reduce_in_bf16.
  DType grad_reduce_dtype = DType::F32;
  // 1: optimizer state sharded over dp, 2: gradients too (optim/distributed_optimizer.h), 3: parameters
  // too (parallel/fsdp.h; parallel.fsdp: true is the same).
  int zero_stage = 0;
  int fsdp_prefetch = 1;  // zero_stage 3: units all-gathered ahead of use (FsdpOptions::prefetch)
  double distributed_timeout_minutes = 10.0;  // the watchdog's hang timeout (multi-rank runs)

  int64_t micro_batch_size = 1;
  int64_t global_batch_size = 1;
  int64_t train_iters = 1;
  int64_t eval_interval = 1000;
  int64_t eval_iters = 10;
  uint64_t seed = 1234;
  Precision precision = Precision::BF16;
  Device device = Device::cpu();  // cuda:local_rank for GPU runs
  bool cuda_graph = false;        // train.cuda_graph: replay each micro-batch from a captured CUDA graph
  std::string resume = "auto";
  // lora.base: with model.lora enabled, the checkpoint folder the frozen base weights load from
  // (the adapters start fresh); empty: the base is initialised from the seed.
  std::string lora_base;
  std::optional<int64_t> exit_interval;  // steps this job runs before saving and exiting

  std::string save_dir;
  int64_t save_interval = 1000;
  int64_t keep_last = 3;
  bool async_save = true;  // rank files written by a background thread while training goes on
  int64_t log_interval = 1;
  std::string run_dir = "runs/latest";

  std::string resolved_yaml;  // the recipe with every default filled in

  int64_t grad_accumulation_steps() const { return global_batch_size / (micro_batch_size * layout.dp); }
  int64_t tokens_per_step() const { return global_batch_size * seq_length; }
};

// `launch` gives the world size (the layout must fit it) and the local rank (the GPU); the
// default is a single process.
TrainConfig train_config_from_recipe(const Recipe& recipe, const LaunchContext& launch = {});

// The model section alone (a preset with its overrides), validated; what generation rebuilds
// from the configuration a checkpoint saved.
TransformerConfig model_config_from_recipe(const Recipe& recipe);

}  // namespace tessera
