// The pretraining loop of `tessera train`: builds the model, optimizer, schedule and data
// loaders from a TrainConfig, then per step accumulates gradients over micro-batches (the loss
// is the sum over tokens divided by the global batch's token count, so every token weighs the
// same whatever micro-batch it sits in), clips by global norm, updates, and logs one line per
// log_interval plus a JSONL record in the run directory. Evaluates on the validation split
// every eval_interval steps.
// Checkpoints (launcher/distributed_checkpoint.h, docs/checkpoints.md): the run starts from the
// checkpoint train.resume picks (model, optimizer state, step, dropout streams, loader position),
// whatever parallel layout saved it, and saves every save_interval steps and at its last step into
// checkpoint.save/iter_NNNNNNN/: each rank captures the pieces it owns into host memory and a
// background thread writes them (checkpoint.async_save) while training goes on; once every rank
// has finished, rank 0 writes metadata.json and COMMIT. On SIGTERM or SIGUSR1 every rank stops at
// the same step boundary, saves, prints `preempted: saved <folder> at step N` and returns.
// Resuming is exact: the steps after the checkpoint compute the same losses, bit for bit on CPU,
// as a run that never stopped (with the same layout; another layout agrees to rounding).
//
// Parallel runs (given ProcessGroups): each data-parallel rank reads its rows of every global
// micro-batch (data/loader.h); gradients live in DistributedDataParallel's f32 buffer and are
// all-reduced (sum: the loss already divides by the global token count) in buckets that start
// during the last micro-batch's backward; earlier micro-batches communicate nothing. Logged
// training and validation losses are summed over the data-parallel group, so they are the
// global batch's; the gradient norm is the whole model's. Only global rank 0 logs and writes the
// run directory. With parallel.zero_stage 1 or 2 the
// optimizer is the DistributedOptimizer (optim/distributed_optimizer.h): gradients are
// reduce-scattered (stage 2: every micro-batch, into a gradient shard), each dp rank updates
// its shard and the parameters are all-gathered; every dp rank saves its own optimizer slices.
// With zero_stage 3 (FSDP, parallel/fsdp.h) there is no DDP: the model gathers
// each unit's parameters around its forward and backward, every micro-batch's gradients are
// reduce-scattered into the units' shards, and the FsdpOptimizer updates this rank's shards;
// the weights are gathered for a save (dp rank 0 writes them), every dp rank writes its optimizer
// slices and resumes into its shards. Without groups the run is the single-process one,
// unchanged (zero_stage has no effect on one rank).
// Pipeline parallelism (layout.pp > 1, docs/pipeline.md): each pp rank builds its GptPipelineStage
// and a PipelineExecutor replaces the micro-batch loop; gradients accumulate without overlap,
// tp/SP and tied-embedding gradients are finalized, then DDP (or ZeRO-1) reduces the stage's
// buckets. The norm sums over dp (ZeRO), tp and pp with replicated parameters and the tied copy
// counted once; the loss comes from the last stage; evaluation runs forward-only through the
// stages; each (tp, pp) rank saves the pieces of all its chunks; logging.pipeline_trace writes
// the first step's Chrome trace into the run directory.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "launcher/train_config.h"
#include "parallel/process_groups.h"

namespace tessera {

struct StepMetrics {
  int64_t step = 0;
  double loss = 0.0;
  double lr = 0.0;
  double grad_norm = 0.0;
  double seconds = 0.0;
  double tokens_per_second = 0.0;
  double tflops_per_device = 0.0;
  double mfu = 0.0;  // 0 when the device's peak is unknown (CPU)
  size_t peak_memory_bytes = 0;
  bool skipped = false;  // fp16: inf/NaN gradients, no update
};

struct TrainResult {
  std::vector<StepMetrics> steps;
  std::vector<std::pair<int64_t, double>> validation_losses;  // (step, loss)
  std::string resumed_from;                                   // checkpoint path; empty for a fresh start
  std::vector<std::string> saved_checkpoints;  // committed checkpoint folders
  bool preempted = false;                      // stopped early on SIGTERM / SIGUSR1 (and saved)
};

class Trainer {
 public:
  using Log = std::function<void(const std::string& line)>;
  // `groups` (null for a single process) must match config.layout and outlive the Trainer;
  // every rank of the launch constructs and runs its Trainer.
  Trainer(TrainConfig config, Log log, const ProcessGroups* groups = nullptr);
  // Trains up to train_iters, or only up to stop_after_step when given (as a job that runs out
  // of time does; it saves there when checkpoint.save is set). Returns the steps this call ran.
  TrainResult run(std::optional<int64_t> stop_after_step = std::nullopt);

 private:
  TrainConfig config_;
  Log log_;
  const ProcessGroups* groups_;
};

// Dense bf16 peak of a GPU in TFLOP/s (no sparsity), 0 when unknown.
double peak_bf16_tflops(Device device);

}  // namespace tessera
