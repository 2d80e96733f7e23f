// Groups parameters' gradients by device, so each multi-tensor kernel runs once per device.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace tessera {

struct DeviceGradients {
  Device device;
  std::vector<Tensor> grads;
};

// The defined gradients of `parameters`, one group per device, in order of first appearance.
std::vector<DeviceGradients> gradients_by_device(const std::vector<Tensor>& parameters);

}  // namespace tessera
