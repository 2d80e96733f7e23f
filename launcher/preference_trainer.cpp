#include "launcher/preference_trainer.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "launcher/checkpoint_directory.h"
#include "optim/grad_norm.h"
#include "optim/lr_schedule.h"

namespace tessera {
namespace {

using Clock = std::chrono::steady_clock;

std::string metrics_json(const char* kind, const PreferenceMetrics& m) {
  return fmt::format(
      "{{\"kind\": \"{}\", \"step\": {}, \"loss\": {:.8g}, \"accuracy\": {:.6g}, \"chosen_reward\": {:.8g}, "
      "\"rejected_reward\": {:.8g}, \"margin\": {:.8g}, \"lr\": {:.6g}, \"grad_norm\": {:.6g}, \"pairs\": {}, "
      "\"seconds\": {:.4f}}}",
      kind, m.step, m.loss, m.accuracy, m.chosen_reward, m.rejected_reward, m.margin, m.lr, m.grad_norm, m.pairs,
      m.seconds);
}

}  // namespace

PreferenceTrainer::PreferenceTrainer(const PreferenceRunConfig& config, Log log, Communicator* dp)
    : c_(config), log_(std::move(log)), dp_(dp) {
  TS_CHECK(dp_ == nullptr || dp_->size() == c_.train.layout.dp, "preference training: the data-parallel group has ",
           dp_ ? dp_->size() : 1, " ranks but the layout's dp is ", c_.train.layout.dp);
  logs_ = dp_ == nullptr || dp_->rank() == 0;
  Log quiet = [this](const std::string& line) {
    if (logs_) log_(line);
  };
  data_ = load_preference_datasets(c_, quiet);
}

void PreferenceTrainer::build_optimizer() {
  parameters_ = trainable_parameters();
  AdamWOptions options = c_.train.adamw;
  adamw_ = std::make_unique<AdamW>(parameters_, options);
}

std::vector<double> PreferenceTrainer::sum_over_ranks(std::vector<double> values) const {
  if (dp_ == nullptr || dp_->size() == 1) return values;
  Tensor t = Tensor::from_vector(values, {int64_t(values.size())}).to(dp_->device());
  dp_->all_reduce(t, ReduceOp::Sum);
  return t.to_vector<double>();
}

std::vector<int64_t> PreferenceTrainer::my_share(const std::vector<int64_t>& pairs) const {
  if (dp_ == nullptr) return pairs;
  const size_t n = pairs.size(), ranks = size_t(dp_->size()), rank = size_t(dp_->rank());
  return {pairs.begin() + long(n * rank / ranks), pairs.begin() + long(n * (rank + 1) / ranks)};
}

std::vector<double> PreferenceTrainer::run_pairs(Split split, const std::vector<int64_t>& pairs, bool backward,
                                                 double scale) {
  const PreferenceDataset& data = split == Split::kTrain ? *data_.train : *data_.valid;
  std::vector<double> sums(4, 0.0);  // loss x pairs, correct, chosen, rejected
  const size_t micro = size_t(c_.train.micro_batch_size);
  for (size_t start = 0; start < pairs.size(); start += micro) {
    const std::vector<int64_t> ids(pairs.begin() + long(start),
                                   pairs.begin() + long(std::min(pairs.size(), start + micro)));
    const PreferenceBatch batch = make_preference_batch(data, ids, c_.train.device);
    const PairOutputs out = forward_pairs(batch, split, ids);
    const double n = double(ids.size());
    if (backward) out.loss.backward(Tensor::full({}, scale * n, out.loss.dtype(), out.loss.device()));
    const std::vector<float> chosen = out.chosen.to(DType::F32).to(Device::cpu()).to_vector<float>();
    const std::vector<float> rejected = out.rejected.to(DType::F32).to(Device::cpu()).to_vector<float>();
    sums[0] += out.loss.item() * n;
    for (size_t i = 0; i < chosen.size(); ++i) {
      sums[1] += chosen[i] > rejected[i] ? 1.0 : 0.0;
      sums[2] += chosen[i];
      sums[3] += rejected[i];
    }
  }
  return sums;
}

PreferenceMetrics PreferenceTrainer::metrics_from_sums(const std::vector<double>& sums, int64_t pairs) const {
  PreferenceMetrics m;
  m.pairs = pairs;
  m.loss = sums[0] / double(pairs);
  m.accuracy = sums[1] / double(pairs);
  m.chosen_reward = sums[2] / double(pairs);
  m.rejected_reward = sums[3] / double(pairs);
  m.margin = m.chosen_reward - m.rejected_reward;
  return m;
}

PreferenceMetrics PreferenceTrainer::evaluate(int64_t step) {
  // The first eval_iters x global_batch_size held-out pairs (all of them when fewer), file order.
  const int64_t count = std::min(data_.valid->size(), c_.train.eval_iters * c_.train.global_batch_size);
  std::vector<int64_t> pairs(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) pairs[size_t(i)] = i;
  set_training(false);
  std::vector<double> sums;
  {
    NoGradGuard no_grad;
    sums = run_pairs(Split::kValid, my_share(pairs), false, 0.0);
  }
  set_training(true);
  PreferenceMetrics m = metrics_from_sums(sum_over_ranks(sums), count);
  m.step = step;
  return m;
}

std::string PreferenceTrainer::save(int64_t step) {
  if (!logs_) return "";  // every rank holds the same weights: rank 0 writes them
  TrainingCheckpoint checkpoint;
  checkpoint.config_yaml = c_.train.resolved_yaml;
  checkpoint.step = step;
  checkpoint.model = checkpoint_parameters();
  checkpoint.consumed_samples = step * c_.train.global_batch_size;
  const SavedCheckpoint saved = save_checkpoint(c_.train.save_dir, checkpoint, c_.train.keep_last,
                                                [this](const std::string& warning) { log_(warning); });
  log_(fmt::format("saved {} ({:.1f} MB, {:.2f} s)", saved.path, double(saved.bytes) / 1e6, saved.seconds));
  return saved.path;
}

PreferenceResult PreferenceTrainer::run() {
  TS_CHECK(adamw_ != nullptr, "PreferenceTrainer: the method did not call build_optimizer()");
  const TrainConfig& t = c_.train;
  const LrSchedule schedule(t.schedule);
  const double inverse_batch = 1.0 / double(t.global_batch_size);
  std::unique_ptr<std::ofstream> metrics;
  if (logs_) {
    std::filesystem::create_directories(t.run_dir);
    std::ofstream(std::filesystem::path(t.run_dir) / "config.yaml") << t.resolved_yaml;
    metrics = std::make_unique<std::ofstream>(std::filesystem::path(t.run_dir) / "metrics.jsonl", std::ios::app);
    TS_CHECK(metrics->good(), "cannot write metrics to ", t.run_dir, "/metrics.jsonl");
  }
  PreferenceResult result;
  set_training(true);
  for (int64_t step = 1; step <= t.train_iters; ++step) {
    const Clock::time_point start = Clock::now();
    {
      NoGradGuard no_grad;
      for (const Tensor& p : parameters_) {
        Tensor g = p.grad();
        if (g.defined()) g.zero_();
      }
    }
    const std::vector<int64_t> pairs =
        preference_step_pairs(data_.train->size(), step - 1, t.global_batch_size, t.seed);
    std::vector<double> sums = run_pairs(Split::kTrain, my_share(pairs), true, inverse_batch);
    if (dp_ != nullptr && dp_->size() > 1) {
      for (const Tensor& p : parameters_) {
        Tensor g = p.grad();  // shares the gradient's storage: reduced in place
        if (g.defined()) dp_->all_reduce(g, ReduceOp::Sum);
      }
    }
    PreferenceMetrics m = metrics_from_sums(sum_over_ranks(sums), t.global_batch_size);
    m.step = step;
    m.lr = schedule.at(step);
    m.grad_norm = std::sqrt(grad_norm_squared(parameters_));
    adamw_->set_learning_rate(m.lr);
    adamw_->step(t.clip_grad > 0.0 ? clip_factor(m.grad_norm, t.clip_grad) : 1.0);
    m.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    result.steps.push_back(m);
    if (logs_) {
      *metrics << metrics_json("train", m) << "\n" << std::flush;
      if (step % t.log_interval == 0 || step == 1 || step == t.train_iters) {
        log_(
            fmt::format("step {:>5}/{} | loss {:.4f} | accuracy {:.3f} | chosen {:+.4f} | rejected {:+.4f} | "
                        "margin {:+.4f} | grad norm {:.3f} | lr {:.3g} | {:.2f} s",
                        step, t.train_iters, m.loss, m.accuracy, m.chosen_reward, m.rejected_reward, m.margin,
                        m.grad_norm, m.lr, m.seconds));
      }
    }
    if (data_.valid && t.eval_iters > 0 && (step % t.eval_interval == 0 || step == t.train_iters)) {
      const PreferenceMetrics v = evaluate(step);
      result.evaluations.push_back(v);
      if (logs_) {
        *metrics << metrics_json("validation", v) << "\n" << std::flush;
        log_(
            fmt::format("validation at step {} ({} pairs) | loss {:.4f} | accuracy {:.3f} | chosen {:+.4f} | "
                        "rejected {:+.4f} | margin {:+.4f}",
                        step, v.pairs, v.loss, v.accuracy, v.chosen_reward, v.rejected_reward, v.margin));
      }
    }
    if (!t.save_dir.empty() && (step % t.save_interval == 0 || step == t.train_iters)) {
      result.last_checkpoint = save(step);
    }
  }
  return result;
}

}  // namespace tessera
