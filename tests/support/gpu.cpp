#include "support/gpu.h"

#include <cmath>
#include <limits>

namespace tessera::testing {

Tensor poisoned(const Shape& shape, DType dtype, Device device) {
  double poison = is_floating(dtype) ? std::numeric_limits<double>::quiet_NaN() : 1e9;
  if (dtype == DType::Bool) poison = 1.0;
  return Tensor::full(shape, poison, dtype, device);
}

double relative_error(const Tensor& got, const Tensor& want) {
  if (got.shape() != want.shape()) return std::numeric_limits<double>::infinity();
  std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  double max_diff = 0.0, max_want = 1e-30;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isfinite(g[i]) != std::isfinite(w[i])) return std::numeric_limits<double>::infinity();
    if (!std::isfinite(w[i])) {
      if (std::isnan(g[i]) || std::isnan(w[i]) || g[i] != w[i]) return std::numeric_limits<double>::infinity();
      continue;
    }
    max_diff = std::max(max_diff, std::abs(g[i] - w[i]));
    max_want = std::max(max_want, std::abs(w[i]));
  }
  return max_diff / max_want;
}

double tolerance_for(DType dtype) {
  switch (dtype) {
    case DType::F64: return 1e-12;
    case DType::F32: return 1e-5;
    case DType::F16: return 5e-3;
    case DType::BF16: return 2e-2;
    default: return 0.0;
  }
}

}  // namespace tessera::testing
