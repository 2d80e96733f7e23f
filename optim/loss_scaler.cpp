#include "optim/loss_scaler.h"

#include <algorithm>

#include "core/backend.h"
#include "core/ops/elementwise.h"
#include "optim/device_groups.h"

namespace tessera {

DynamicLossScaler::DynamicLossScaler(LossScalerOptions options) : options_(options), scale_(options.initial_scale) {
  TS_CHECK(options.initial_scale >= options.min_scale && options.min_scale > 0.0, "DynamicLossScaler: initial_scale ",
           options.initial_scale, " must be >= min_scale ", options.min_scale, " > 0");
  TS_CHECK(options.growth_factor > 1.0 && options.backoff_factor > 0.0 && options.backoff_factor < 1.0,
           "DynamicLossScaler: need growth_factor > 1 and backoff_factor in (0, 1)");
  TS_CHECK(options.growth_interval > 0, "DynamicLossScaler: growth_interval must be positive");
}

void DynamicLossScaler::set_state(const LossScalerState& state) {
  TS_CHECK(state.scale >= options_.min_scale && state.clean_steps >= 0 && state.skipped_steps >= 0,
           "DynamicLossScaler: invalid saved state (scale ", state.scale, ", clean steps ", state.clean_steps, ")");
  scale_ = state.scale;
  clean_steps_ = state.clean_steps;
  skipped_ = state.skipped_steps;
}

Tensor DynamicLossScaler::scale_loss(const Tensor& loss) const { return tessera::scale(loss, scale_); }

bool DynamicLossScaler::unscale_and_update(const std::vector<Tensor>& parameters) {
  bool finite = true;
  for (const DeviceGradients& group : gradients_by_device(parameters)) {
    Tensor found_inf = Tensor::zeros({1}, DType::F32, group.device);
    backend_for(group.device).unscale_and_check_finite(group.grads, 1.0 / scale_, found_inf);
    finite = finite && found_inf.item() == 0.0;
  }
  if (!finite) {
    scale_ = std::max(options_.min_scale, scale_ * options_.backoff_factor);
    clean_steps_ = 0;
    ++skipped_;
    return false;
  }
  if (++clean_steps_ == options_.growth_interval) {
    scale_ *= options_.growth_factor;
    clean_steps_ = 0;
  }
  return true;
}

}  // namespace tessera
