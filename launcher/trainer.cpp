#include "launcher/trainer.h"

#include <fmt/format.h>

#include "core/cuda/runtime.h"
#include "launcher/training_run.h"

namespace tessera {

double peak_bf16_tflops(Device device) {
  if (!device.is_cuda()) return 0.0;
  std::string name = cuda_device_description(device.index);
  if (name.find("H100") != std::string::npos || name.find("H200") != std::string::npos) return 989.4;
  if (name.find("A100") != std::string::npos) return 312.0;
  return 0.0;
}

Trainer::Trainer(TrainConfig config, Log log, const ProcessGroups* groups)
    : config_(std::move(config)), log_(std::move(log)), groups_(groups) {
  const ParallelLayout& want = config_.layout;
  if (!groups_) {
    TS_CHECK(want.product() == 1, "Trainer: the layout tp ", want.tp, " x pp ", want.pp, " x dp ", want.dp,
             " needs the process groups of a launch of that many ranks");
    return;
  }
  const ParallelLayout& have = groups_->layout();
  TS_CHECK(have.tp == want.tp && have.dp == want.dp && have.pp == want.pp && have.cp == want.cp,
           "Trainer: the process groups (tp ", have.tp, ", pp ", have.pp, ", dp ", have.dp,
           ") differ from the configured layout (tp ", want.tp, ", pp ", want.pp, ", dp ", want.dp, ")");
}

TrainResult Trainer::run(std::optional<int64_t> stop_after_step) {
  const TrainConfig& c = config_;
  int64_t last_step = stop_after_step.value_or(c.train_iters);
  TS_CHECK(last_step >= 1 && last_step <= c.train_iters, "Trainer::run: stop_after_step ", last_step,
           " is outside [1, train.train_iters = ", c.train_iters, "]");
  training::RankRole role(c, groups_);
  const Log silent = [](const std::string&) {};
  const Log& log = role.logs ? log_ : silent;
  log(fmt::format(
      "tessera train: {} ({:.1f}M parameters) on {}, {} precision, global batch {} = {} x {} "
      "micro-batches x {} ranks, {} tokens/step{}",
      c.model.name, double(c.model.parameter_count()) / 1e6, c.device.str(), dtype_name(training::parameter_dtype(c)),
      c.global_batch_size, c.micro_batch_size, c.grad_accumulation_steps(), c.layout.dp, c.tokens_per_step(),
      !groups_           ? std::string()
      : c.layout.pp == 1 ? fmt::format(" (layout: tp {} x dp {})", c.layout.tp, c.layout.dp)
                         : fmt::format(" (layout: tp {} x pp {} x dp {})", c.layout.tp, c.layout.pp, c.layout.dp)));
  training::TrainingRun run(c, log, role);
  return run.run(last_step);
}

}  // namespace tessera
