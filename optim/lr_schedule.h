// Learning-rate schedule with Megatron's semantics (OptimizerParamScheduler): linear warmup
// from 0 to the peak over `warmup_steps`, then decay to `min_lr` at `decay_steps`, then flat:
//   ratio = (step - warmup) / (decay_steps - warmup)
//   cosine: min + (peak - min) * 0.5 (1 + cos(pi ratio));  linear: min + (peak - min)(1 - ratio)
//   constant: peak;  WSD (warmup-stable-decay): peak until the last `wsd_decay_steps`, then
//   linear to min.
#pragma once

#include <cstdint>
#include <string>

namespace tessera {

enum class LrDecayStyle { Cosine, Linear, Constant, WarmupStableDecay };

LrDecayStyle lr_decay_style_from_name(const std::string& name);  // cosine, linear, constant, WSD

struct LrScheduleOptions {
  double peak_lr = 3e-4;
  double min_lr = 0.0;
  int64_t warmup_steps = 0;
  int64_t decay_steps = 1;
  int64_t wsd_decay_steps = 0;
  LrDecayStyle style = LrDecayStyle::Cosine;
};

class LrSchedule {
 public:
  explicit LrSchedule(LrScheduleOptions options);
  // Learning rate for optimizer step `step` (1-based: the first update uses step 1).
  double at(int64_t step) const;

 private:
  LrScheduleOptions options_;
};

}  // namespace tessera
