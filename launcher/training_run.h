// The trainer's working parts (launcher/trainer.h is the interface): TrainingRun, one call of
// Trainer::run, with where this process sits in the run (RankRole) and the helpers its files
// share. training_run.cpp builds the run and saves, resumes, logs and evaluates it;
// training_step.cpp runs a step (single-stage or through the pipeline executor), its gradient
// norm and the optimizer update. Internal to launcher/.
#pragma once

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>

#include "core/backend.h"
#include "data/blended_dataset_builder.h"
#include "data/loader.h"
#include "launcher/async_checkpoint_writer.h"
#include "launcher/checkpoint_sharding.h"
#include "launcher/checkpoint_state.h"
#include "launcher/micro_batch_graph.h"
#include "launcher/sft_data.h"
#include "launcher/trainer.h"
#include "models/gpt_model.h"
#include "models/gpt_pipeline_stage.h"
#include "optim/distributed_optimizer.h"
#include "optim/fsdp_optimizer.h"
#include "optim/loss_scaler.h"
#include "parallel/distributed_data_parallel.h"
#include "parallel/fsdp.h"
#include "parallel/pipeline_executor.h"

namespace tessera::training {

using Clock = std::chrono::steady_clock;

// The parameters' dtype for the recipe's train.precision.
DType parameter_dtype(const TrainConfig& c);

// A loader micro-batch as tensors on `device` (no loss mask: every label counts).
LmBatch to_device(const MicroBatch& mb, Device device);

// Zeroes every defined .grad of `parameters`.

// Sums `values` over the ranks of `comm` (f64, on the communicator's device).
std::vector<double> sum_over(Communicator& comm, const std::vector<double>& values);

// The pipeline schedule of the recipe (kind, pp, vpp, micro-batches per step).
PipelineScheduleOptions schedule_options(const TrainConfig& c);

// Each micro-batch's loss is a token sum; its backward starts from 1 / the global batch's token
// count, as the single-process loop scales it.
PipelineExecutorOptions executor_options(const TrainConfig& c);

struct RunFiles {
  std::ofstream metrics;
  explicit RunFiles(const TrainConfig& c) {
    std::filesystem::create_directories(c.run_dir);
    std::ofstream(std::filesystem::path(c.run_dir) / "config.yaml") << c.resolved_yaml;
    metrics.open(std::filesystem::path(c.run_dir) / "metrics.jsonl", std::ios::app);
    TS_CHECK(metrics.good(), "cannot write metrics to ", c.run_dir, "/metrics.jsonl");
  }
};

// Where this process sits in the run; a single process when there are no groups.
struct RankRole {
  const ProcessGroups* groups = nullptr;
  bool logs = true;   // global rank 0: logs, writes the run directory and commits checkpoints
  bool zero = false;  // ZeRO: the optimizer state is sharded over data-parallel ranks
  bool fsdp = false;  // ZeRO-3: the parameters and gradients too (no DDP)
  CheckpointRank checkpoint;  // which pieces of the checkpoint this rank writes and reads

  RankRole(const TrainConfig& c, const ProcessGroups* g) : groups(g) {
    ParallelCoords at = groups ? groups->coords() : ParallelCoords{};
    logs = at == ParallelCoords{};
    zero = groups && c.zero_stage > 0;
    fsdp = groups && c.zero_stage == 3;
    const ParallelLayout layout = groups ? groups->layout() : ParallelLayout{};
    checkpoint = {rank_of_coords(layout, at), int(layout.product()), layout.tp, layout.pp, at.tp, at.pp, at.dp, at.cp};
  }
};

// One call of Trainer::run: the model, optimizer, data and files, and the loop over steps.
class TrainingRun {
 public:
  TrainingRun(const TrainConfig& config, const Trainer::Log& log, const RankRole& role);
  TrainResult run(int64_t last_step);

 private:
  int64_t resume();  // the first step to run
  // LoRA: the frozen base from lora.base (a fresh start or a resume: adapter checkpoints hold no base).
  void load_lora_base_weights();
  void zero_gradients();
  StepMetrics train_step(int64_t step);
  // train.cuda_graph: one micro-batch's forward and backward through micro_batch_graph_; its loss sum.
  double graph_micro_batch(const MicroBatch& mb, double inv_tokens);
  void log_first_step_memory() const;
  // LoRA: trainable vs frozen parameters, and the gradient and optimizer bytes of each.
  void log_lora_memory() const;
  // Pipeline runs: the step through the executor, the grad norm over every stage, evaluation
  // forward-only through the stages.
  StepMetrics pipeline_train_step(int64_t step);
  // Clips and updates (unless skipped), given the step's loss and gradient norm.
  void optimizer_step(StepMetrics& m);
  void finish_metrics(StepMetrics& m, Clock::time_point start) const;
  double pipeline_grad_norm_squared() const;
  std::pair<double, double> pipeline_validation_sums(DataLoader& valid);
  double grad_norm_squared_of_model() const;
  std::vector<bool> trained_parameters_sharded() const;
  // The model piece checkpoints hold: the whole model, or every chunk of this pipeline rank.
  ModelPiece piece() const;
  void record(const StepMetrics& m);
  void evaluate(int64_t step);
  // Checkpoints (collective over every rank): save captures this rank's pieces and starts writing
  // them (after the previous save is committed); finish_save waits for the write, agrees that every
  // rank succeeded, and has rank 0 commit. At each step boundary poll agrees on a preemption
  // signal (its return) and commits a save that every rank has finished writing, without waiting.
  void save(int64_t step);
  void finish_save();
  bool poll_step_boundary(bool signal_seen);
  // Max of `values` over every rank of the run (the values themselves in a single process).
  std::vector<double> max_over_every_rank(const std::vector<double>& values) const;

  const TrainConfig& c_;
  const Trainer::Log& log_;
  const RankRole& role_;
  std::unique_ptr<RunFiles> files_;                 // on the logging rank only
  std::unique_ptr<GptModel> model_;                 // without pipeline parallelism
  std::unique_ptr<GptPipelineStage> stage_;         // with pipeline parallelism: this pp rank's chunks
  std::unique_ptr<PipelineExecutor> executor_;      // with pipeline parallelism
  std::unique_ptr<DistributedDataParallel> ddp_;    // with process groups, except ZeRO-3
  std::unique_ptr<FullyShardedDataParallel> fsdp_;  // ZeRO-3 with process groups: drives model_'s units
  Tensor f32_grads_;  // one process: the flat buffer the 16-bit parameters' f32 grads are views of
  std::vector<Tensor> parameters_;
  std::unique_ptr<AdamW> adamw_;                // without ZeRO
  std::unique_ptr<DistributedOptimizer> zero_;  // with ZeRO (parallel.zero_stage 1 or 2)
  std::unique_ptr<FsdpOptimizer> zero3_;        // with ZeRO-3
  LrSchedule schedule_;
  DynamicLossScaler scaler_;
  SplitDatasets datasets_;
  SftDatasets sft_datasets_;  // instead of datasets_ with data.sft_train_path
  DataLoaderOptions loader_options_;
  std::unique_ptr<DataLoader> loader_;
  std::unique_ptr<MicroBatchGraph> micro_batch_graph_;  // train.cuda_graph
  AsyncCheckpointWriter writer_;
  struct PendingSave {
    std::string folder;
    CheckpointMetadata metadata;
  };
  std::optional<PendingSave> pending_save_;  // written (or being written), not yet committed
  double flops_per_step_;
  double peak_tflops_;
  TrainResult result_;
};

}  // namespace tessera::training
