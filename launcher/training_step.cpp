#include "launcher/training_run.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/autograd/grad_mode.h"
#include "core/cuda/runtime.h"
#include "core/memory_stats.h"
#include "core/ops/ops.h"
#include "models/lora.h"
#include "optim/grad_norm.h"

namespace tessera::training {

void TrainingRun::zero_gradients() {
  if (ddp_) {
    ddp_->zero_grad();
  } else if (fsdp_) {
    fsdp_->zero_grad();
  } else {
    NoGradGuard no_grad;
    if (f32_grads_.defined()) f32_grads_.zero_();  // every 16-bit parameter's grad, in one fill
    for (const Tensor& p : parameters_) {
      Tensor grad = p.grad();
      if (p.dtype() == DType::F32 && grad.defined()) grad.zero_();
    }
  }
}

// parameter_is_tensor_parallel_sharded() cut to the trained parameters (with LoRA, the adapters).
std::vector<bool> TrainingRun::trained_parameters_sharded() const {
  std::vector<bool> sharded = model_->parameter_is_tensor_parallel_sharded();
  return c_.model.lora.enabled() ? trainable_subset(*model_, sharded) : sharded;
}

// After DDP every rank holds the whole batch's gradients; under tensor parallelism the squares
// of sharded parameters are summed over tp and replicated ones counted once. With ZeRO each rank
// holds its shard, and the distributed (ZeRO-3: FSDP) optimizer sums the squares over dp (and tp).
double TrainingRun::grad_norm_squared_of_model() const {
  if (zero3_) {
    if (c_.layout.tp == 1) return zero3_->grad_norm_squared();
    return zero3_->grad_norm_squared(trained_parameters_sharded(), &role_.groups->tp());
  }
  if (zero_) {
    if (c_.layout.tp == 1) return zero_->grad_norm_squared();
    return zero_->grad_norm_squared(trained_parameters_sharded(), &role_.groups->tp());
  }
  if (c_.layout.tp == 1) return grad_norm_squared(parameters_);
  std::vector<bool> sharded = trained_parameters_sharded();
  std::vector<Tensor> replicated_parameters, sharded_parameters;
  for (size_t i = 0; i < parameters_.size(); ++i)
    (sharded[i] ? sharded_parameters : replicated_parameters).push_back(parameters_[i]);
  return grad_norm_squared(replicated_parameters) +
         sum_over(role_.groups->tp(), {grad_norm_squared(sharded_parameters)})[0];
}

StepMetrics TrainingRun::train_step(int64_t step) {
  if (stage_) return pipeline_train_step(step);
  auto start = Clock::now();
  reset_peak_memory(c_.device);  // the log's peak is this step's
  zero_gradients();
  // Every token of the global batch weighs 1 / (tokens in the global batch). SFT counts only the
  // tokens its loss mask keeps (the step's rows are read first to count them, over dp too).
  double inv_tokens = 1.0 / double(c_.tokens_per_step());
  std::vector<MicroBatch> sft_micro_batches;
  if (c_.sft.enabled()) {
    double counted = 0.0;
    for (int64_t micro = 0; micro < c_.grad_accumulation_steps(); ++micro) {
      std::optional<MicroBatch> mb = loader_->next();
      TS_CHECK(mb.has_value(), "the SFT data ran out at step ", step);
      counted += counted_tokens(*mb);
      sft_micro_batches.push_back(std::move(*mb));
    }
    if (role_.groups) counted = sum_over(role_.groups->dp(), {counted})[0];
    inv_tokens = counted > 0.0 ? 1.0 / counted : 0.0;  // a step without trained tokens changes nothing
  }
  double loss_sum = 0.0;
  for (int64_t micro = 0; micro < c_.grad_accumulation_steps(); ++micro) {
    // All but the last micro-batch only accumulate; ZeRO-2 and ZeRO-3 have no full buffer to
    // accumulate into and reduce-scatter every micro-batch into their shards.
    const bool sharded_grads = ddp_ && ddp_->options().grad_sync == GradSync::Sharded;
    std::optional<DistributedDataParallel::NoSyncScope> accumulate_only;
    if (ddp_ && !sharded_grads && micro + 1 < c_.grad_accumulation_steps()) accumulate_only.emplace(*ddp_);
    std::optional<MicroBatch> mb =
        c_.sft.enabled() ? std::optional<MicroBatch>(std::move(sft_micro_batches[size_t(micro)])) : loader_->next();
    TS_CHECK(mb.has_value(), "the training data ran out at step ", step, " (consumed ", loader_->consumed_samples(),
             " samples)");
    if (c_.cuda_graph) {
      loss_sum += graph_micro_batch(*mb, inv_tokens);
    } else {
      Tensor loss = model_->loss(to_device(*mb, c_.device), LossReduction::Sum);
      Tensor scaled = scale(loss, inv_tokens);
      if (c_.precision == Precision::FP16) scaled = scaler_.scale_loss(scaled);
      scaled.backward();
      loss_sum += loss.item();
    }
    if (sharded_grads && micro + 1 < c_.grad_accumulation_steps()) ddp_->finish_grad_sync();
    if (fsdp_) fsdp_->finish_grad_sync();
  }
  if (ddp_) {
    ddp_->finish_grad_sync();
    model_->finalize_tensor_parallel_grads();  // sequence parallelism's partial norm/bias gradients
  }
  if (role_.groups) loss_sum = sum_over(role_.groups->dp(), {loss_sum})[0];
  bool take_step = c_.precision != Precision::FP16 || scaler_.unscale_and_update(parameters_);
  StepMetrics m;
  m.step = step;
  m.loss = loss_sum * inv_tokens;  // per counted token
  m.lr = schedule_.at(step);
  m.grad_norm = std::sqrt(grad_norm_squared_of_model());
  m.skipped = !take_step;
  if (take_step) optimizer_step(m);
  finish_metrics(m, start);
  if (result_.steps.empty() && c_.device.is_cuda()) log_first_step_memory();
  return m;
}

// What stays between steps (parameters, gradients, optimizer state, caches) and what the step
// adds at its peak (activations and temporaries), after this job's first step.
void TrainingRun::log_first_step_memory() const {
  MemoryStats memory = memory_stats(c_.device);
  const double gib = double(1 << 30);
  log_(fmt::format("memory after the first step on {}: {:.2f} GiB held between steps (parameters, gradients, "
                   "optimizer state), peak {:.2f} GiB: activations and temporaries up to {:.2f} GiB",
                   c_.device.str(), double(memory.in_use_bytes) / gib, double(memory.peak_bytes) / gib,
                   double(memory.peak_bytes - memory.in_use_bytes) / gib));
}

double TrainingRun::graph_micro_batch(const MicroBatch& mb, double inv_tokens) {
  if (!micro_batch_graph_) micro_batch_graph_ = std::make_unique<MicroBatchGraph>(*model_, c_.device, inv_tokens);
  const bool captured_before = micro_batch_graph_->captured();
  double loss = micro_batch_graph_->run(mb);
  if (!captured_before && micro_batch_graph_->captured())
    log_(fmt::format("cuda graph: captured a micro-batch's forward and backward; replays use {:.2f} GiB of "
                     "activation memory",
                     double(micro_batch_graph_->pool_bytes()) / double(1 << 30)));
  return loss;
}

void TrainingRun::finish_metrics(StepMetrics& m, Clock::time_point start) const {
  m.peak_memory_bytes = memory_stats(c_.device).peak_bytes;  // this step's (GPU); reading it waits for the step
  m.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  m.tokens_per_second = double(c_.tokens_per_step()) / m.seconds;
  m.tflops_per_device = flops_per_step_ / m.seconds / 1e12 / double(c_.layout.product());
  m.mfu = peak_tflops_ > 0.0 ? m.tflops_per_device / peak_tflops_ : 0.0;
}

void TrainingRun::optimizer_step(StepMetrics& m) {
  double grad_scale = c_.clip_grad > 0.0 ? clip_factor(m.grad_norm, c_.clip_grad) : 1.0;
  if (zero_) {
    zero_->set_learning_rate(m.lr);
    zero_->step(grad_scale);
  } else if (zero3_) {
    zero3_->set_learning_rate(m.lr);
    zero3_->step(grad_scale);
  } else {
    adamw_->set_learning_rate(m.lr);
    adamw_->step(grad_scale);
  }
}

// One step through the pipeline executor: every pp rank reads the step's micro-batches (the
// first and last virtual stage use them; reading on every rank keeps the loader positions, and
// so the checkpoints, alike). Gradients accumulate locally over the whole schedule; then
// sequence parallelism's and the tied embedding's partial gradients are summed (both linear, so
// before the data-parallel reduction is as good as after) and DDP reduces every bucket at once:
// no overlap with the backward (ZeRO-1's reduce-scatter must see the embedding sum already).
StepMetrics TrainingRun::pipeline_train_step(int64_t step) {
  auto start = Clock::now();
  reset_peak_memory(c_.device);
  zero_gradients();
  std::vector<LmBatch> micro_batches;
  for (int64_t micro = 0; micro < c_.grad_accumulation_steps(); ++micro) {
    std::optional<MicroBatch> mb = loader_->next();
    TS_CHECK(mb.has_value(), "the training data ran out at step ", step, " (consumed ", loader_->consumed_samples(),
             " samples)");
    micro_batches.push_back(to_device(*mb, c_.device));
  }
  stage_->set_micro_batches(std::move(micro_batches));
  const bool trace = c_.pipeline_trace && result_.steps.empty();  // this job's first step
  PipelineStepResult pipeline;
  {
    DistributedDataParallel::NoSyncScope accumulate_only(*ddp_);
    if (trace) {
      PipelineExecutorOptions options = executor_options(c_);
      options.collect_timelines = true;
      std::filesystem::path path = std::filesystem::path(c_.run_dir) / "pipeline_trace.json";
      if (role_.logs) options.trace_path = path;  // one writer for the whole job
      pipeline = PipelineExecutor(role_.groups->pp(), *stage_, schedule_options(c_), options).run_step();
      log_(
          fmt::format("pipeline trace of step {} written to {}: bubble fraction {:.3f} measured (per stage {:.3f}), "
                      "{:.3f} analytic for equal-cost stages",
                      step, path.string(), pipeline.stats.mean_bubble_fraction,
                      fmt::join(pipeline.stats.bubble_fraction, " "), analytic_bubble_fraction(schedule_options(c_))));
    } else {
      pipeline = executor_->run_step();
    }
  }
  stage_->finalize_grads(role_.groups->embedding());
  ddp_->finish_grad_sync();
  double loss_sum = 0.0;
  for (double loss : pipeline.losses) loss_sum += loss;
  // Losses live on the last stage: summed over dp, then over pp (the other stages add 0), so
  // every rank (global rank 0 logs) holds the global batch's loss.
  loss_sum = sum_over(role_.groups->dp(), {loss_sum})[0];
  loss_sum = sum_over(role_.groups->pp(), {loss_sum})[0];
  StepMetrics m;
  m.step = step;
  m.loss = loss_sum / double(c_.tokens_per_step());
  m.lr = schedule_.at(step);
  m.grad_norm = std::sqrt(pipeline_grad_norm_squared());
  optimizer_step(m);
  finish_metrics(m, start);
  return m;
}

// The whole model's gradient norm: each rank sums the squares of the gradient it holds (all of
// its stage's parameters, or its ZeRO pieces of them), skipping the last stage's copy of a tied
// embedding (equal to the first stage's after finalize_grads) and, on tp ranks other than 0,
// the parameters every tp rank holds whole; the sums then add up over dp (ZeRO pieces only),
// tp and pp.
double TrainingRun::pipeline_grad_norm_squared() const {
  std::vector<bool> sharded, shared_copy;
  for (int chunk = 0; chunk < stage_->num_chunks(); ++chunk) {
    const GptModel& model = stage_->chunk(chunk);
    std::vector<bool> s = model.parameter_is_tensor_parallel_sharded(), copy = model.parameter_is_shared_copy();
    sharded.insert(sharded.end(), s.begin(), s.end());
    shared_copy.insert(shared_copy.end(), copy.begin(), copy.end());
  }
  const bool tp_rank0 = role_.groups->coords().tp == 0;
  auto counts = [&](size_t i) { return !shared_copy[i] && (sharded[i] || tp_rank0); };
  std::vector<Tensor> grads;
  if (zero_) {
    for (const ShardPiece& piece : zero_->pieces()) {
      if (!counts(piece.parameter)) continue;
      // ZeRO-1 keeps the full buffer; this rank's pieces of it hold the reduced gradient.
      Tensor grad = parameters_[piece.parameter].grad().reshape({-1});
      grads.push_back(grad.narrow(0, piece.param_offset, piece.numel));
    }
  } else {
    for (size_t i = 0; i < parameters_.size(); ++i)
      if (counts(i)) grads.push_back(parameters_[i].grad());
  }
  Tensor out = Tensor::zeros({1}, DType::F32, c_.device);
  if (!grads.empty()) backend_for(c_.device).sum_squares(grads, out);
  double squares = double(out.item());
  if (zero_) squares = sum_over(role_.groups->dp(), {squares})[0];
  squares = sum_over(role_.groups->tp(), {squares})[0];
  return sum_over(role_.groups->pp(), {squares})[0];
}

}  // namespace tessera::training
