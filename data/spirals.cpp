#include "data/spirals.h"

#include <cmath>
#include <numbers>

#include "core/ops/random_ops.h"

namespace tessera {

ClassificationData make_spirals(int64_t points_per_class, int64_t classes, double noise, Generator& generator) {
  TS_CHECK(points_per_class > 0 && classes >= 2, "make_spirals: need points_per_class > 0 and classes >= 2, got ",
           points_per_class, " and ", classes);
  int64_t n = points_per_class * classes;
  std::vector<float> jitter = randn({n}, generator).to_vector<float>();
  std::vector<float> features(static_cast<size_t>(n * 2));
  std::vector<int64_t> labels(static_cast<size_t>(n));
  for (int64_t c = 0; c < classes; ++c) {
    for (int64_t i = 0; i < points_per_class; ++i) {
      size_t row = static_cast<size_t>(c * points_per_class + i);
      double radius = static_cast<double>(i) / static_cast<double>(points_per_class);
      double angle = 4.0 * radius + 2.0 * std::numbers::pi * static_cast<double>(c) / static_cast<double>(classes) +
                     noise * jitter[row];
      features[2 * row] = static_cast<float>(radius * std::sin(angle));
      features[2 * row + 1] = static_cast<float>(radius * std::cos(angle));
      labels[row] = c;
    }
  }
  return {Tensor::from_vector(features, {n, 2}), Tensor::from_vector(labels, {n})};
}

}  // namespace tessera
