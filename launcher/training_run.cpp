#include "launcher/training_run.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/autograd/grad_mode.h"
#include "core/cuda/runtime.h"
#include "core/memory_stats.h"
#include "core/ops/ops.h"
#include "launcher/checkpoint_directory.h"
#include "launcher/checkpoint_preemption.h"
#include "launcher/lora_checkpoint.h"
#include "launcher/lora_run.h"
#include "launcher/sft_data.h"
#include "models/lora.h"
#include "optim/grad_norm.h"

namespace tessera::training {

DType parameter_dtype(const TrainConfig& c) {
  if (c.precision == Precision::FP32) return DType::F32;
  return c.precision == Precision::BF16 ? DType::BF16 : DType::F16;
}

LmBatch to_device(const MicroBatch& mb, Device device) {
  Shape shape{mb.rows, mb.sequence_length};
  LmBatch batch{Tensor::from_vector(mb.tokens, shape).to(device), Tensor::from_vector(mb.labels, shape).to(device),
                mb.loss_mask.empty() ? Tensor() : Tensor::from_vector(mb.loss_mask, shape).to(device)};
  batch.document_lengths = mb.document_lengths;
  return batch;
}

// Sums `values` over the ranks of `comm` (f64, on the communicator's device).
std::vector<double> sum_over(Communicator& comm, const std::vector<double>& values) {
  Tensor t = Tensor::from_vector(values, {int64_t(values.size())}).to(comm.device());
  comm.all_reduce(t, ReduceOp::Sum);
  return t.to_vector<double>();
}

PipelineScheduleOptions schedule_options(const TrainConfig& c) {
  return {c.pipeline_schedule, c.layout.pp, PipelineLayout(c.pipeline).vpp(), int(c.grad_accumulation_steps())};
}

// Each micro-batch's loss is a token sum; its backward starts from 1 / the global batch's token
// count, as the single-process loop scales it.
PipelineExecutorOptions executor_options(const TrainConfig& c) {
  PipelineExecutorOptions options;
  options.loss_grad_scale = 1.0 / double(c.tokens_per_step());
  return options;
}

namespace {

// Gradients of 16-bit parameters accumulate in f32 (Megatron's main_grad), each a view into one
// flat buffer (`buffer`), so that zeroing them all is one fill rather than one per parameter.
std::vector<Tensor> parameters_with_f32_grads(std::vector<Tensor> parameters, Tensor& buffer) {
  constexpr int64_t kAlign = 64;  // elements: every view starts 256-byte aligned for vector loads
  int64_t total = 0;
  for (const Tensor& p : parameters)
    if (p.dtype() != DType::F32) total += (p.numel() + kAlign - 1) / kAlign * kAlign;
  if (total == 0) return parameters;
  buffer = Tensor::zeros({total}, DType::F32, parameters.front().device());
  int64_t offset = 0;
  for (const Tensor& p : parameters) {
    if (p.dtype() == DType::F32) continue;
    p.set_grad(buffer.narrow(0, offset, p.numel()).view(p.shape()));
    offset += (p.numel() + kAlign - 1) / kAlign * kAlign;
  }
  return parameters;
}

// A barrier over every rank of the grid: successive barriers along each axis order every rank
// after all the others have arrived.
void barrier_over_every_rank(const ProcessGroups& groups) {
  for (Communicator* axis : {&groups.tp(), &groups.cp(), &groups.dp(), &groups.pp()}) axis->barrier();
}

std::shared_ptr<const TokenSampleDataset> require(std::shared_ptr<const TokenSampleDataset> d, const char* what) {
  TS_CHECK(d != nullptr, "data.split gives the ", what, " split no documents; give it a non-zero share");
  return d;
}

SplitDatasets build_datasets(const TrainConfig& c) {
  int64_t evaluations = c.train_iters / c.eval_interval + 1;
  SplitSampleCounts samples = {c.train_iters * c.global_batch_size,
                               c.eval_iters > 0
                                   ? std::optional<int64_t>(c.eval_iters * c.global_batch_size * evaluations)
                                   : std::optional<int64_t>(0),
                               0};
  GptDatasetConfig data_config;
  data_config.sequence_length = c.seq_length;
  data_config.random_seed = static_cast<uint32_t>(c.seed);
  return build_gpt_split_datasets(parse_data_blend(c.data_path), c.split, samples, data_config);
}

// With process groups, gradients live in DDP's buffer (f32, or bf16 with
// parallel.grad_reduce_in_bf16); alone, 16-bit parameters get f32
// buffers of their own and f32 ones accumulate as autograd allocates.
std::unique_ptr<DistributedDataParallel> make_ddp(const TrainConfig& c, const RankRole& role,
                                                  const std::vector<Tensor>& parameters) {
  if (!role.groups || role.fsdp) return nullptr;
  GradSync sync = !role.zero ? GradSync::AllReduce : c.zero_stage == 1 ? GradSync::ReduceScatter : GradSync::Sharded;
  return std::make_unique<DistributedDataParallel>(parameters, role.groups->dp(),
                                                   DdpOptions{.bucket_size_mb = c.ddp_bucket_size_mb,
                                                              .reduction = ReduceOp::Sum,
                                                              .grad_sync = sync,
                                                              .grad_dtype = c.grad_reduce_dtype});
}

// ZeRO-3: shards the model's units over dp (each rank passes the same full values: every rank
// builds the model from the same seed) and makes the model gather them around each unit.
std::unique_ptr<FullyShardedDataParallel> make_fsdp(const TrainConfig& c, const RankRole& role, GptModel* model) {
  if (!role.fsdp) return nullptr;
  auto fsdp = std::make_unique<FullyShardedDataParallel>(
      model->fsdp_units(), role.groups->dp(),
      FsdpOptions{.prefetch = c.fsdp_prefetch, .reduction = ReduceOp::Sum, .grad_dtype = c.grad_reduce_dtype});
  model->set_fsdp(fsdp.get());
  return fsdp;
}

std::unique_ptr<GptModel> make_model(const TrainConfig& c, const RankRole& role) {
  if (c.layout.pp > 1) return nullptr;
  return std::make_unique<GptModel>(
      c.model, c.seed, ParamOptions{parameter_dtype(c), c.device},
      ModelParallelism{.tp = role.groups ? &role.groups->tp() : nullptr, .sequence_parallel = c.sequence_parallel});
}

// This pp rank's chunks of the layout; each micro-batch's loss is its token sum (the executor
// scales the backward by 1 / the global batch's token count).
std::unique_ptr<GptPipelineStage> make_stage(const TrainConfig& c, const RankRole& role) {
  if (c.layout.pp == 1) return nullptr;
  return std::make_unique<GptPipelineStage>(
      c.model, c.seed, PipelineLayout(c.pipeline), role.groups->coords().pp,
      GptPipelineStageOptions{c.micro_batch_size, c.seq_length, LossReduction::Sum},
      ParamOptions{parameter_dtype(c), c.device},
      ModelParallelism{.tp = &role.groups->tp(), .sequence_parallel = c.sequence_parallel});
}

// The parameters that train: with LoRA the adapters alone (the frozen base gets no gradient,
// no optimizer state and no DDP bucket), else all of them.
std::vector<Tensor> model_parameters(const GptModel* model, const GptPipelineStage* stage) {
  if (stage) return stage->parameters();
  return model->config().lora.enabled() ? trainable_parameters(*model) : model->parameters();
}

std::string mib(size_t bytes) { return fmt::format("{:.2f} MiB", double(bytes) / double(1 << 20)); }

}  // namespace

TrainingRun::TrainingRun(const TrainConfig& config, const Trainer::Log& log, const RankRole& role)
    : c_(config),
      log_(log),
      role_(role),
      files_(role.logs ? std::make_unique<RunFiles>(config) : nullptr),
      model_(make_model(config, role)),
      stage_(make_stage(config, role)),
      ddp_(make_ddp(config, role, model_parameters(model_.get(), stage_.get()))),
      fsdp_(make_fsdp(config, role, model_.get())),
      parameters_(role.groups ? model_parameters(model_.get(), stage_.get())
                              : parameters_with_f32_grads(model_parameters(model_.get(), stage_.get()), f32_grads_)),
      adamw_(role.zero ? nullptr : std::make_unique<AdamW>(parameters_, config.adamw)),
      zero_(role.zero && !role.fsdp ? std::make_unique<DistributedOptimizer>(*ddp_, config.adamw) : nullptr),
      zero3_(role.fsdp ? std::make_unique<FsdpOptimizer>(*fsdp_, config.adamw) : nullptr),
      schedule_(config.schedule),
      flops_per_step_(config.model.training_flops_per_token(config.seq_length) * double(config.tokens_per_step())),
      peak_tflops_(peak_bf16_tflops(config.device)) {
  if (model_) model_->set_recompute(c_.recompute);
  if (stage_) {
    for (int chunk = 0; chunk < stage_->num_chunks(); ++chunk) stage_->chunk(chunk).set_recompute(c_.recompute);
    executor_ =
        std::make_unique<PipelineExecutor>(role.groups->pp(), *stage_, schedule_options(c_), executor_options(c_));
    log_(fmt::format("pipeline: {} schedule, {} micro-batches per step; layers per stage:\n{}",
                     schedule_kind_name(c_.pipeline_schedule), c_.grad_accumulation_steps(),
                     PipelineLayout(c_.pipeline).describe()));
  }
  loader_options_.micro_batch_size = c_.micro_batch_size;
  loader_options_.data_parallel_size = c_.layout.dp;
  loader_options_.data_parallel_rank = role.groups ? role.groups->coords().dp : 0;
  if (ddp_ && !zero_) {
    log_(fmt::format("data parallel over {} rank(s): f32 gradient buffer {:.2f} MiB in {} bucket(s) (target {} MiB)",
                     c_.layout.dp, double(ddp_->grad_buffer_bytes()) / double(1 << 20), ddp_->buckets().size(),
                     c_.ddp_bucket_size_mb));
  }
  if (zero_) {
    ZeroMemoryReport m = zero_->memory_report();
    log_(
        fmt::format("ZeRO-{} over {} data-parallel rank(s), per rank: parameters {}, gradients {}, optimizer state {} "
                    "(total {}), communication buffers up to {}; {} bucket(s) (target {} MiB)",
                    c_.zero_stage, c_.layout.dp, mib(m.parameters), mib(m.gradients), mib(m.optimizer_state),
                    mib(m.total()), mib(m.communication), ddp_->buckets().size(), c_.ddp_bucket_size_mb));
  }
  if (zero3_) {
    ZeroMemoryReport m = zero3_->memory_report();
    log_(
        fmt::format("ZeRO-3 (FSDP) over {} data-parallel rank(s), per rank: parameters {}, gradients {}, optimizer "
                    "state {} (total {}), communication buffers up to {}; {} unit(s), prefetch {}",
                    c_.layout.dp, mib(m.parameters), mib(m.gradients), mib(m.optimizer_state), mib(m.total()),
                    mib(m.communication), fsdp_->num_units(), c_.fsdp_prefetch));
  }
  if (model_ && c_.model.lora.enabled()) log_lora_memory();
  if (!role.groups && c_.zero_stage > 0)
    log_("parallel.zero_stage has no effect in a single process (one data-parallel rank holds everything)");
}

void TrainingRun::log_lora_memory() const {
  size_t state = 0, grad_buffer = ddp_ ? ddp_->grad_buffer_bytes() : 0;
  if (zero_) {
    const ZeroMemoryReport m = zero_->memory_report();
    state = m.optimizer_state;
    grad_buffer = m.gradients;
  } else {
    for (size_t i = 0; i < adamw_->parameters().size(); ++i) {
      state += 2 * size_t(adamw_->exp_avg(i).numel()) * sizeof(float);
      if (adamw_->has_separate_master(i)) state += size_t(adamw_->master_weight(i).numel()) * sizeof(float);
    }
  }
  const std::vector<Tensor>& optimized = zero_ ? zero_->parameters() : adamw_->parameters();
  log_(measure_lora_memory(*model_, optimized, state, grad_buffer).describe());
}

void TrainingRun::load_lora_base_weights() {
  if (!c_.model.lora.enabled()) return;
  if (c_.lora_base.empty()) {
    log_("LoRA: no lora.base; the frozen base is initialised from train.seed");
    return;
  }
  load_lora_base(c_.lora_base, *model_);
  log_(fmt::format("LoRA: frozen base weights loaded from {}", c_.lora_base));
}

int64_t TrainingRun::resume() {
  auto warn = [&](const std::string& message) { log_("warning: " + message); };
  std::vector<CheckpointEntry> existing = list_checkpoint_folders(c_.save_dir);
  if (c_.resume == "none" && !existing.empty()) {
    warn(
        fmt::format("train.resume=none, but {} already holds {} checkpoint folder(s) up to {}: saves of the same step "
                    "replace them, and a later train.resume=auto picks the highest committed step",
                    c_.save_dir, existing.size(), existing.back().path));
  }
  std::optional<std::string> folder = find_resume_checkpoint(c_.resume, c_.save_dir, warn);
  if (!folder && c_.resume == "auto" && !list_checkpoints(c_.save_dir).empty())
    warn(fmt::format("{} holds single-file checkpoints (iter_NNNNNNN.h5) of an older Tessera, which train no longer "
                     "resumes; they stay for generate/export (--checkpoint FILE)",
                     c_.save_dir));
  std::optional<CheckpointReader> reader;
  if (folder) reader.emplace(*folder);
  if (role_.groups) {
    // Every rank must resume from the same step (they list the same folder; a file system that
    // shows ranks different contents would otherwise mix two checkpoints).
    const double step = reader ? double(reader->metadata().step) : -1.0;
    std::vector<double> e = max_over_every_rank({step, -step});
    TS_CHECK(e[0] == -e[1], "train.resume: the ranks found different checkpoints to resume from in ", c_.save_dir,
             " (steps ", -e[1], " to ", e[0], "); put checkpoint.save on a file system every rank sees the same way");
  }
  if (!reader) {
    if (c_.resume != "none" && !c_.save_dir.empty())
      log_(fmt::format("no checkpoint in {}; starting from scratch", c_.save_dir));
    load_lora_base_weights();
    return 1;
  }
  const CheckpointMetadata& saved = reader->metadata();
  if (c_.model.lora.enabled()) {
    load_lora_base_weights();  // the checkpoint holds the adapters alone
    restore_lora_checkpoint(*reader, *model_, *adamw_);
  } else if (zero_) {
    restore_rank_checkpoint(*reader, piece(), *zero_);
  } else if (zero3_) {
    restore_rank_checkpoint(*reader, piece(), *zero3_);
  } else {
    restore_rank_checkpoint(*reader, piece(), *adamw_);
  }
  if (!restore_rank_rng(*reader, piece(), role_.checkpoint) && c_.model.hidden_dropout > 0)
    log_("note: the checkpoint was saved with other tensor/pipeline sizes, so dropout streams start afresh here");
  scaler_.set_state(saved.loss_scaler);
  loader_options_.consumed_samples = saved.consumed_samples;
  result_.resumed_from = *folder;
  log_(fmt::format("resumed from {} (saved with {}): {} steps done, {} samples consumed", *folder,
                   saved.layout.describe(), saved.step, saved.consumed_samples));
  return saved.step + 1;
}

std::vector<double> TrainingRun::max_over_every_rank(const std::vector<double>& values) const {
  if (!role_.groups) return values;
  Tensor t = Tensor::from_vector(values, {int64_t(values.size())}).to(role_.groups->tp().device());
  for (Communicator* axis : {&role_.groups->tp(), &role_.groups->cp(), &role_.groups->dp(), &role_.groups->pp()})
    axis->all_reduce(t, ReduceOp::Max);
  return t.to_vector<double>();
}

TrainResult TrainingRun::run(int64_t last_step) {
  int64_t first_step = resume();  // before the datasets: a checkpoint that does not fit fails fast
  if (c_.exit_interval) {
    last_step = std::min(last_step, first_step - 1 + *c_.exit_interval);
    if (last_step < c_.train_iters)
      log_(fmt::format("train.exit_interval: this job stops after step {} (saving a checkpoint there)", last_step));
  }
  if (first_step > last_step) {
    log_(fmt::format("the checkpoint is at step {}; nothing to train up to step {}", first_step - 1, last_step));
    // Resumed from another directory: write the state into checkpoint.save in this run's layout
    // (a conversion for tools that want per-rank files of this layout; training never needs it).
    namespace fs = std::filesystem;
    if (!c_.save_dir.empty() && !result_.resumed_from.empty() &&
        fs::weakly_canonical(result_.resumed_from).parent_path() != fs::weakly_canonical(c_.save_dir)) {
      save(first_step - 1);
      finish_save();
    }
    return std::move(result_);
  }
  if (c_.sft.enabled()) {
    // Every rank renders and packs the same conversations with the same seed (no shared cache).
    sft_datasets_ = load_sft_datasets(c_, [this](const std::string& line) {
      if (role_.logs) log_(line);
    });
    loader_ = std::make_unique<DataLoader>(sft_datasets_.train, loader_options_);
  } else {
    if (role_.groups) {
      // Global rank 0 builds and caches the sample indices first; the others then load its cache
      // instead of each building the same files (Megatron's order).
      if (role_.logs) datasets_ = build_datasets(c_);
      barrier_over_every_rank(*role_.groups);
      if (!role_.logs) datasets_ = build_datasets(c_);
    } else {
      datasets_ = build_datasets(c_);
    }
    loader_ = std::make_unique<DataLoader>(require(datasets_[0], "train"), loader_options_);
  }
  reset_peak_memory(c_.device);
  PreemptionSignals signals;
  for (int64_t step = first_step; step <= last_step; ++step) {
    record(train_step(step));
    if (step % c_.eval_interval == 0 || step == c_.train_iters) evaluate(step);
    if (poll_step_boundary(signals.seen())) {
      result_.preempted = true;
      if (c_.save_dir.empty()) {
        log_(fmt::format("preempted: checkpoint.save is empty, nothing saved; stopped at step {}", step));
        break;
      }
      save(step);
      finish_save();
      log_(fmt::format("preempted: saved {} at step {}", result_.saved_checkpoints.back(), step));
      break;
    }
    if (!c_.save_dir.empty() && (step % c_.save_interval == 0 || step == last_step)) save(step);
  }
  finish_save();
  return std::move(result_);
}

void TrainingRun::record(const StepMetrics& m) {
  result_.steps.push_back(m);
  if (m.step % c_.log_interval == 0 || m.step == c_.train_iters) {
    log_(
        fmt::format("step {:5d}/{} | loss {:.4f} | lr {:.3e} | grad norm {:.3f} | {:.0f} tokens/s | {:.1f} TFLOP/s "
                    "| MFU {} | peak mem {:.2f} GiB{}",
                    m.step, c_.train_iters, m.loss, m.lr, m.grad_norm, m.tokens_per_second, m.tflops_per_device,
                    peak_tflops_ > 0.0 ? fmt::format("{:.1f}%", 100.0 * m.mfu) : std::string("n/a"),
                    double(m.peak_memory_bytes) / double(1 << 30), m.skipped ? " | skipped (inf/nan)" : ""));
  }
  if (!files_) return;
  files_->metrics << nlohmann::json{{"step", m.step},
                                    {"loss", m.loss},
                                    {"lr", m.lr},
                                    {"grad_norm", m.grad_norm},
                                    {"seconds", m.seconds},
                                    {"tokens_per_second", m.tokens_per_second},
                                    {"tflops", m.tflops_per_device},
                                    {"mfu", m.mfu},
                                    {"peak_memory_bytes", m.peak_memory_bytes}}
                         .dump()
                  << "\n";
}

void TrainingRun::evaluate(int64_t step) {
  if (c_.eval_iters == 0 || (c_.sft.enabled() ? !sft_datasets_.valid : !datasets_[1])) return;
  NoGradGuard no_grad;
  const DataLoaderOptions options{.micro_batch_size = c_.micro_batch_size,
                                  .data_parallel_rank = loader_options_.data_parallel_rank,
                                  .data_parallel_size = loader_options_.data_parallel_size};
  DataLoader valid = c_.sft.enabled() ? DataLoader(sft_datasets_.valid, options) : DataLoader(datasets_[1], options);
  double loss_sum = 0.0, tokens = 0.0;
  if (stage_) {
    std::tie(loss_sum, tokens) = pipeline_validation_sums(valid);
  } else {
    model_->eval();
    for (int64_t i = 0; i < c_.eval_iters * c_.grad_accumulation_steps(); ++i) {
      std::optional<MicroBatch> mb = valid.next();
      if (!mb) break;
      loss_sum += model_->loss(to_device(*mb, c_.device), LossReduction::Sum).item();
      tokens += counted_tokens(*mb);
    }
    model_->train();
  }
  if (role_.groups) {
    std::vector<double> sums = sum_over(role_.groups->dp(), {loss_sum, tokens});
    loss_sum = sums[0];
    tokens = sums[1];
  }
  if (tokens == 0) return;
  double loss = loss_sum / tokens;
  result_.validation_losses.emplace_back(step, loss);
  log_(fmt::format("validation at step {}: loss {:.4f} | perplexity {:.2f}", step, loss, std::exp(loss)));
  if (files_) files_->metrics << nlohmann::json{{"step", step}, {"validation_loss", loss}}.dump() << "\n";
}

// Validation through the pipeline, forward only and without a schedule: micro-batch after
// micro-batch, each virtual stage receives its input from the previous one, runs its chunk and
// sends the result on (plain send/recv over the pp group, tag 2: no executor transfer is in
// flight). Stages wait for each other, which costs nothing that matters for a few evaluation
// batches. The last stage holds the loss and token sums (0 elsewhere), summed over pp.
std::pair<double, double> TrainingRun::pipeline_validation_sums(DataLoader& valid) {
  constexpr int kEvalTag = 2;
  Communicator& pp = role_.groups->pp();
  const int stage = pp.rank(), stages = pp.size(), chunks = stage_->num_chunks();
  for (int chunk = 0; chunk < chunks; ++chunk) stage_->chunk(chunk).eval();
  double loss_sum = 0.0, tokens = 0.0;
  for (int64_t i = 0; i < c_.eval_iters * c_.grad_accumulation_steps(); ++i) {
    std::optional<MicroBatch> mb = valid.next();  // every rank: the same stopping point
    if (!mb) break;
    stage_->set_micro_batches({to_device(*mb, c_.device)});
    for (int chunk = 0; chunk < chunks; ++chunk) {
      const bool first = stage == 0 && chunk == 0, last = stage == stages - 1 && chunk == chunks - 1;
      Tensor input;
      if (!first) {
        input = Tensor::zeros(stage_->input_shape(chunk), stage_->activation_dtype(), stage_->device());
        pp.recv(input, (stage + stages - 1) % stages, kEvalTag);
      }
      Tensor output = stage_->forward(chunk, 0, input);
      if (last) {
        loss_sum += output.item();
        tokens += double(mb->rows * mb->sequence_length);
      } else {
        pp.send(output.contiguous(), (stage + 1) % stages, kEvalTag);
      }
    }
  }
  for (int chunk = 0; chunk < chunks; ++chunk) stage_->chunk(chunk).train();
  std::vector<double> sums = sum_over(pp, {loss_sum, tokens});
  return {sums[0], sums[1]};
}

ModelPiece TrainingRun::piece() const {
  if (!stage_) return ModelPiece(*model_);
  std::vector<const GptModel*> chunks;
  for (int chunk = 0; chunk < stage_->num_chunks(); ++chunk) chunks.push_back(&stage_->chunk(chunk));
  return ModelPiece(std::move(chunks));
}

void TrainingRun::save(int64_t step) {
  finish_save();
  const auto start = Clock::now();
  const CheckpointRank& at = role_.checkpoint;
  // Rank 0 clears and creates the folder before any rank writes into it.
  std::string folder = (std::filesystem::path(c_.save_dir) / checkpoint_folder_name(step)).string();
  if (role_.logs) folder = prepare_checkpoint_folder(c_.save_dir, step);
  if (role_.groups) barrier_over_every_rank(*role_.groups);
  // ZeRO-3: every dp rank captures, as the capture gathers the full weights over dp.
  RankCheckpoint captured = c_.model.lora.enabled() ? capture_lora_checkpoint(*model_, *adamw_, at)
                            : zero_                 ? capture_rank_checkpoint(piece(), *zero_, at)
                            : zero3_                ? capture_rank_checkpoint(piece(), *zero3_, at)
                                                    : capture_rank_checkpoint(piece(), *adamw_, at);
  CheckpointMetadata metadata;
  metadata.step = step;
  metadata.consumed_samples = loader_ ? loader_->consumed_samples() : loader_options_.consumed_samples;
  metadata.optimizer_steps_taken = zero_    ? zero_->steps_taken()
                                   : zero3_ ? zero3_->steps_taken()
                                            : adamw_->steps_taken();
  metadata.loss_scaler = scaler_.state();
  metadata.layout = {c_.layout.tp,      c_.layout.pp, PipelineLayout(c_.pipeline).vpp(), c_.layout.dp, c_.layout.cp,
                     role_.groups ? c_.zero_stage : 0, at.world_size};
  metadata.config_yaml = c_.resolved_yaml;
  writer_.start(folder, std::move(captured));
  pending_save_ = PendingSave{folder, std::move(metadata)};
  if (!c_.async_save) {
    finish_save();
    return;
  }
  log_(fmt::format("checkpoint of step {}: captured in {:.3f} s, writing in the background", step,
                   std::chrono::duration<double>(Clock::now() - start).count()));
}

void TrainingRun::finish_save() {
  if (!pending_save_) return;
  const auto start = Clock::now();
  std::optional<std::string> error = writer_.wait();
  PendingSave pending = std::move(*pending_save_);
  pending_save_.reset();
  if (error) fmt::print(stderr, "tessera: checkpoint write of {} failed: {}\n", pending.folder, *error);
  const bool failed_somewhere = max_over_every_rank({error ? 1.0 : 0.0})[0] > 0.0;
  TS_CHECK(!error, "checkpoint: writing ", pending.folder, " failed: ", error.value_or(""),
           "; the previous checkpoints are untouched");
  TS_CHECK(!failed_somewhere, "checkpoint: another rank failed to write its file of ", pending.folder,
           " (see its error); the previous checkpoints are untouched");
  result_.saved_checkpoints.push_back(pending.folder);
  if (!role_.logs) return;
  commit_checkpoint(pending.folder, std::move(pending.metadata));
  std::vector<std::string> removed = remove_old_checkpoints(c_.save_dir, c_.keep_last);
  log_(fmt::format("saved checkpoint {} (waited {:.3f} s for the writes){}", pending.folder,
                   std::chrono::duration<double>(Clock::now() - start).count(),
                   removed.empty() ? "" : fmt::format(", removed {}", fmt::join(removed, ", "))));
}

bool TrainingRun::poll_step_boundary(bool signal_seen) {
  const bool writing = pending_save_ && !writer_.finished();
  std::vector<double> agreed = max_over_every_rank({signal_seen ? 1.0 : 0.0, writing ? 1.0 : 0.0});
  if (pending_save_ && agreed[1] == 0.0) finish_save();  // every rank is done: commit without waiting
  return agreed[0] > 0.0;
}

}  // namespace tessera::training
