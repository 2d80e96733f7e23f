// Activation recomputation (Megatron's "full" recompute of a region, PyTorch's checkpoint):
// the forward of `region` runs without recording, keeping only its inputs; backward reruns
// it with recording on and backpropagates through the rerun. Random draws inside the region
// are replayed exactly: the given generators are rewound to their state at forward time for
// the rerun, then restored. Gradients equal the plain run's bit for bit.
#pragma once

#include <functional>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"

namespace tessera {

using RegionFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& inputs)>;

std::vector<Tensor> checkpoint(const RegionFn& region, const std::vector<Tensor>& inputs,
                               const std::vector<Generator*>& generators = {});

}  // namespace tessera
