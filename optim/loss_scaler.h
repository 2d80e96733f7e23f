// Dynamic loss scaling for fp16 training: the loss is multiplied by `scale` before backward so
// small gradients survive fp16; the gradients are divided by it afterwards. A step whose
// gradients hold inf/NaN is skipped and the scale backs off; after `growth_interval` clean
// steps in a row the scale grows. (bf16 has f32's range and needs none of this.)
#pragma once

#include <vector>

#include "core/tensor.h"

namespace tessera {

struct LossScalerOptions {
  double initial_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 1000;
  double min_scale = 1.0;
};

// What a checkpoint keeps of a scaler to resume it exactly.
struct LossScalerState {
  double scale = 65536.0;
  int64_t clean_steps = 0;
  int64_t skipped_steps = 0;
};

class DynamicLossScaler {
 public:
  explicit DynamicLossScaler(LossScalerOptions options = {});

  double scale() const { return scale_; }
  int64_t skipped_steps() const { return skipped_; }
  LossScalerState state() const { return {scale_, clean_steps_, skipped_}; }
  void set_state(const LossScalerState& state);
  Tensor scale_loss(const Tensor& loss) const;
  // Divides every defined gradient by the scale in place; returns whether all were finite
  // (take the optimizer step) and updates the scale for the next step.
  bool unscale_and_update(const std::vector<Tensor>& parameters);

 private:
  LossScalerOptions options_;
  double scale_;
  int64_t clean_steps_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace tessera
