#include "optim/lr_schedule.h"

#include <cmath>
#include <numbers>

#include "core/check.h"

namespace tessera {

LrDecayStyle lr_decay_style_from_name(const std::string& name) {
  if (name == "cosine") return LrDecayStyle::Cosine;
  if (name == "linear") return LrDecayStyle::Linear;
  if (name == "constant") return LrDecayStyle::Constant;
  if (name == "WSD") return LrDecayStyle::WarmupStableDecay;
  TS_CHECK(false, "unknown lr_decay_style '", name, "'; expected cosine, linear, constant or WSD");
  return LrDecayStyle::Cosine;
}

LrSchedule::LrSchedule(LrScheduleOptions options) : options_(options) {
  TS_CHECK(options.peak_lr >= options.min_lr && options.min_lr >= 0.0, "lr schedule: need peak lr ", options.peak_lr,
           " >= min_lr ", options.min_lr, " >= 0");
  TS_CHECK(options.warmup_steps >= 0 && options.decay_steps > options.warmup_steps,
           "lr schedule: lr_decay_iters (", options.decay_steps, ") must exceed lr_warmup_iters (",
           options.warmup_steps, ")");
  TS_CHECK(options.style != LrDecayStyle::WarmupStableDecay ||
               (options.wsd_decay_steps > 0 && options.wsd_decay_steps <= options.decay_steps - options.warmup_steps),
           "lr schedule: WSD needs 0 < lr_wsd_decay_iters (", options.wsd_decay_steps,
           ") <= lr_decay_iters - lr_warmup_iters");
}

double LrSchedule::at(int64_t step) const {
  const LrScheduleOptions& o = options_;
  if (o.warmup_steps > 0 && step <= o.warmup_steps) return o.peak_lr * double(step) / double(o.warmup_steps);
  if (o.style == LrDecayStyle::Constant) return o.peak_lr;
  if (step >= o.decay_steps) return o.min_lr;
  double ratio = double(step - o.warmup_steps) / double(o.decay_steps - o.warmup_steps);
  double coefficient = 1.0;
  switch (o.style) {
    case LrDecayStyle::Cosine: coefficient = 0.5 * (1.0 + std::cos(std::numbers::pi * ratio)); break;
    case LrDecayStyle::Linear: coefficient = 1.0 - ratio; break;
    case LrDecayStyle::WarmupStableDecay: {
      int64_t stable_end = o.decay_steps - o.wsd_decay_steps;
      coefficient = step <= stable_end ? 1.0 : 1.0 - double(step - stable_end) / double(o.wsd_decay_steps);
      break;
    }
    case LrDecayStyle::Constant: break;
  }
  return o.min_lr + coefficient * (o.peak_lr - o.min_lr);
}

}  // namespace tessera
