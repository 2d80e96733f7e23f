// Global gradient norm for clipping: the L2 norm over every parameter's gradient, computed by
// the backend's multi-tensor sum of squares (one launch per device). In a data- or
// tensor-parallel run the caller all-reduces the squared sums before the square root.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace tessera {

// Squared L2 norm of the defined gradients of `parameters` (f64 on the host).
double grad_norm_squared(const std::vector<Tensor>& parameters);

// The factor to divide gradients by so their norm is at most max_norm (1 when already below);
// pass it to AdamW::step(grad_scale) to clip inside the fused update.
double clip_factor(double total_norm, double max_norm);

}  // namespace tessera
