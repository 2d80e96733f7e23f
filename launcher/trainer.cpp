#include "launcher/trainer.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/autograd/grad_mode.h"
#include "core/cuda/runtime.h"
#include "core/memory_stats.h"
#include "core/ops/ops.h"
#include "data/blended_dataset_builder.h"
#include "data/loader.h"
#include "models/gpt_model.h"
#include "optim/grad_norm.h"
#include "optim/loss_scaler.h"

namespace tessera {

namespace {

using Clock = std::chrono::steady_clock;

DType parameter_dtype(const TrainConfig& c) {
  if (c.precision == Precision::FP32) return DType::F32;
  return c.precision == Precision::BF16 ? DType::BF16 : DType::F16;
}

LmBatch to_device(const MicroBatch& mb, Device device) {
  Shape shape{mb.rows, mb.sequence_length};
  return {Tensor::from_vector(mb.tokens, shape).to(device), Tensor::from_vector(mb.labels, shape).to(device),
          Tensor()};
}

// Gradients of 16-bit parameters accumulate in f32 buffers (Megatron's main_grad).
void install_f32_grad_buffers(const std::vector<Tensor>& parameters) {
  for (const Tensor& p : parameters) {
    if (p.dtype() != DType::F32) p.set_grad(Tensor::zeros(p.shape(), DType::F32, p.device()));
  }
}

void zero_grads(const std::vector<Tensor>& parameters) {
  NoGradGuard no_grad;
  for (const Tensor& p : parameters) {
    Tensor g = p.grad();
    if (g.defined()) g.zero_();
  }
}

std::shared_ptr<const TokenSampleDataset> require(std::shared_ptr<const TokenSampleDataset> d, const char* what) {
  TS_CHECK(d != nullptr, "data.split gives the ", what, " split no documents; give it a non-zero share");
  return d;
}

struct RunFiles {
  std::ofstream metrics;
  explicit RunFiles(const TrainConfig& c) {
    std::filesystem::create_directories(c.run_dir);
    std::ofstream(std::filesystem::path(c.run_dir) / "config.yaml") << c.resolved_yaml;
    metrics.open(std::filesystem::path(c.run_dir) / "metrics.jsonl", std::ios::app);
    TS_CHECK(metrics.good(), "cannot write metrics to ", c.run_dir, "/metrics.jsonl");
  }
};

}  // namespace

double peak_bf16_tflops(Device device) {
  if (!device.is_cuda()) return 0.0;
  std::string name = cuda_device_description(device.index);
  if (name.find("H100") != std::string::npos || name.find("H200") != std::string::npos) return 989.4;
  if (name.find("A100") != std::string::npos) return 312.0;
  return 0.0;
}

Trainer::Trainer(TrainConfig config, Log log) : config_(std::move(config)), log_(std::move(log)) {}

TrainResult Trainer::run() {
  const TrainConfig& c = config_;
  RunFiles files(c);
  log_(fmt::format("tessera train: {} ({:.1f}M parameters) on {}, {} precision, global batch {} = {} x {} "
                   "micro-batches x {} ranks, {} tokens/step",
                   c.model.name, double(c.model.parameter_count()) / 1e6, c.device.str(),
                   dtype_name(parameter_dtype(c)), c.global_batch_size, c.micro_batch_size,
                   c.grad_accumulation_steps(), c.data_parallel_size, c.tokens_per_step()));

  GptModel model(c.model, c.seed, ParamOptions{parameter_dtype(c), c.device});
  model.set_recompute(c.recompute);
  std::vector<Tensor> parameters = model.parameters();
  install_f32_grad_buffers(parameters);
  AdamW optimizer(parameters, c.adamw);
  LrSchedule schedule(c.schedule);
  DynamicLossScaler scaler;

  int64_t evaluations = c.train_iters / c.eval_interval + 1;
  SplitSampleCounts samples = {c.train_iters * c.global_batch_size,
                               c.eval_iters > 0 ? std::optional<int64_t>(c.eval_iters * c.global_batch_size * evaluations)
                                                : std::optional<int64_t>(0),
                               0};
  GptDatasetConfig data_config;
  data_config.sequence_length = c.seq_length;
  data_config.random_seed = static_cast<uint32_t>(c.seed);
  SplitDatasets datasets = build_gpt_split_datasets(parse_data_blend(c.data_path), c.split, samples, data_config);
  auto train_data = require(datasets[0], "train");
  DataLoaderOptions loader_options;
  loader_options.micro_batch_size = c.micro_batch_size;
  DataLoader loader(train_data, loader_options);

  auto evaluate = [&](int64_t step, TrainResult& result) {
    if (c.eval_iters == 0 || !datasets[1]) return;
    NoGradGuard no_grad;
    model.eval();
    DataLoader valid(datasets[1], loader_options);
    double loss_sum = 0.0, tokens = 0.0;
    for (int64_t i = 0; i < c.eval_iters * c.grad_accumulation_steps(); ++i) {
      std::optional<MicroBatch> mb = valid.next();
      if (!mb) break;
      loss_sum += model.loss(to_device(*mb, c.device), LossReduction::Sum).item();
      tokens += double(mb->rows * mb->sequence_length);
    }
    model.train();
    if (tokens == 0) return;
    double loss = loss_sum / tokens;
    result.validation_losses.emplace_back(step, loss);
    log_(fmt::format("validation at step {}: loss {:.4f} | perplexity {:.2f}", step, loss, std::exp(loss)));
    files.metrics << nlohmann::json{{"step", step}, {"validation_loss", loss}}.dump() << "\n";
  };

  TrainResult result;
  double flops_per_step = c.model.training_flops_per_token(c.seq_length) * double(c.tokens_per_step());
  double peak = peak_bf16_tflops(c.device);
  reset_peak_memory(c.device);
  for (int64_t step = 1; step <= c.train_iters; ++step) {
    auto start = Clock::now();
    zero_grads(parameters);
    // Every token of the global batch weighs 1 / (tokens in the global batch).
    double inv_tokens = 1.0 / double(c.tokens_per_step());
    double loss_sum = 0.0;
    for (int64_t micro = 0; micro < c.grad_accumulation_steps(); ++micro) {
      std::optional<MicroBatch> mb = loader.next();
      TS_CHECK(mb.has_value(), "the training data ran out at step ", step, " (consumed ", loader.consumed_samples(),
               " samples)");
      Tensor loss = model.loss(to_device(*mb, c.device), LossReduction::Sum);
      Tensor scaled = scale(loss, inv_tokens);
      if (c.precision == Precision::FP16) scaled = scaler.scale_loss(scaled);
      scaled.backward();
      loss_sum += loss.item();
    }
    bool take_step = c.precision != Precision::FP16 || scaler.unscale_and_update(parameters);
    StepMetrics m;
    m.step = step;
    m.loss = loss_sum * inv_tokens;
    m.lr = schedule.at(step);
    m.grad_norm = std::sqrt(grad_norm_squared(parameters));
    if (take_step) {
      optimizer.set_learning_rate(m.lr);
      optimizer.step(c.clip_grad > 0.0 ? clip_factor(m.grad_norm, c.clip_grad) : 1.0);
    }
    m.peak_memory_bytes = memory_stats(c.device).peak_bytes;  // reading it waits for the step
    m.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    m.tokens_per_second = double(c.tokens_per_step()) / m.seconds;
    m.tflops_per_device = flops_per_step / m.seconds / 1e12 / double(c.data_parallel_size);
    m.mfu = peak > 0.0 ? m.tflops_per_device / peak : 0.0;
    result.steps.push_back(m);
    if (step % c.log_interval == 0 || step == c.train_iters) {
      log_(fmt::format("step {:5d}/{} | loss {:.4f} | lr {:.3e} | grad norm {:.3f} | {:.0f} tokens/s | {:.1f} TFLOP/s "
                       "| MFU {} | peak mem {:.2f} GiB{}",
                       step, c.train_iters, m.loss, m.lr, m.grad_norm, m.tokens_per_second, m.tflops_per_device,
                       peak > 0.0 ? fmt::format("{:.1f}%", 100.0 * m.mfu) : std::string("n/a"),
                       double(m.peak_memory_bytes) / double(1 << 30), take_step ? "" : " | skipped (inf/nan)"));
    }
    files.metrics << nlohmann::json{{"step", step},           {"loss", m.loss},
                                    {"lr", m.lr},             {"grad_norm", m.grad_norm},
                                    {"seconds", m.seconds},   {"tokens_per_second", m.tokens_per_second},
                                    {"tflops", m.tflops_per_device}, {"mfu", m.mfu},
                                    {"peak_memory_bytes", m.peak_memory_bytes}}
                         .dump()
                  << "\n";
    if (step % c.eval_interval == 0 || step == c.train_iters) evaluate(step, result);
  }
  return result;
}

}  // namespace tessera
