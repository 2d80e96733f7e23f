#include "support/gradcheck.h"

#include <algorithm>
#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"

namespace tessera::testing {

namespace {

double weighted_sum(const TensorFn& fn, const std::vector<Tensor>& inputs, const Tensor& weights) {
  NoGradGuard no_grad;
  return sum(mul(fn(inputs), weights)).item();
}

}  // namespace

GradcheckResult gradcheck(const TensorFn& fn, const std::vector<Tensor>& inputs, double eps) {
  for (const Tensor& input : inputs) {
    TS_CHECK(!input.requires_grad() || input.dtype() == DType::F64, "gradcheck: inputs must be f64, got ", input);
    if (input.requires_grad()) input.set_grad(Tensor());
  }
  Tensor output = fn(inputs);
  Generator generator(987654321);
  Tensor weights = randn(output.shape(), generator, DType::F64);
  sum(mul(output, weights)).backward();

  GradcheckResult result;
  for (const Tensor& input : inputs) {
    if (!input.requires_grad()) continue;
    TS_CHECK(input.grad().defined(), "gradcheck: no gradient reached an input of shape ", input.shape());
    std::vector<double> analytic = input.grad().to_vector<double>();
    TS_CHECK(input.is_contiguous(), "gradcheck: inputs must be contiguous");
    double* x = input.data<double>();
    double max_diff = 0.0, max_numeric = 0.0;
    for (int64_t i = 0; i < input.numel(); ++i) {
      double saved = x[i];
      x[i] = saved + eps;
      double plus = weighted_sum(fn, inputs, weights);
      x[i] = saved - eps;
      double minus = weighted_sum(fn, inputs, weights);
      x[i] = saved;
      double numeric = (plus - minus) / (2.0 * eps);
      max_diff = std::max(max_diff, std::abs(numeric - analytic[static_cast<size_t>(i)]));
      max_numeric = std::max(max_numeric, std::abs(numeric));
    }
    result.max_relative_error = std::max(result.max_relative_error, max_diff / std::max(max_numeric, 1e-12));
    result.max_abs_gradient = std::max(result.max_abs_gradient, max_numeric);
  }
  return result;
}

}  // namespace tessera::testing
