#include "optim/grad_norm.h"

#include <cmath>

#include "core/backend.h"
#include "optim/device_groups.h"

namespace tessera {

double grad_norm_squared(const std::vector<Tensor>& parameters) {
  double total = 0.0;
  for (const DeviceGradients& group : gradients_by_device(parameters)) {
    Tensor out = Tensor::empty({1}, DType::F32, group.device);
    backend_for(group.device).sum_squares(group.grads, out);
    total += out.item();
  }
  return total;
}

double clip_factor(double total_norm, double max_norm) {
  TS_CHECK(max_norm > 0.0, "clip_factor: max_norm ", max_norm, " must be positive");
  TS_CHECK(std::isfinite(total_norm), "gradient norm is ", total_norm,
           ": a gradient holds inf or NaN (lower the learning rate, or use bf16/loss scaling)");
  return total_norm > max_norm ? total_norm / max_norm : 1.0;
}

}  // namespace tessera
