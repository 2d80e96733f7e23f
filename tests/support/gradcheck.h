// Gradient check against central finite differences in f64.
// For a function f of tensors, draws a random upstream gradient w and compares, for every
// input element, d(sum(f(x) * w))/dx from backward() with (L(x + eps) - L(x - eps)) / (2 eps).
// The error reported is normwise relative: max |analytic - numeric| / max(max |numeric|, 1e-12).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"

namespace tessera::testing {

using TensorFn = std::function<Tensor(const std::vector<Tensor>& inputs)>;

struct GradcheckResult {
  double max_relative_error = 0.0;
  double max_abs_gradient = 0.0;
};

// `inputs` are f64 leaves; the ones with requires_grad are checked.
GradcheckResult gradcheck(const TensorFn& fn, const std::vector<Tensor>& inputs, double eps = 1e-6);

}  // namespace tessera::testing
