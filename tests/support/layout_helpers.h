// Helpers shared by the tensor layout tests: row-major reference values and index arithmetic
// written independently of the views under test.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "core/tensor.h"

namespace tessera::testing {

using Index = std::vector<int64_t>;

inline Tensor iota(const Shape& shape, DType dtype = DType::F32) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i);
  return Tensor::from_vector(v, shape).to(dtype);
}

inline std::vector<double> random_values(size_t n, uint32_t seed, double low = -2.0, double high = 2.0) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(low, high);
  std::vector<double> v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

inline Tensor random_f64(const Shape& shape, uint32_t seed) {
  return Tensor::from_vector(random_values(static_cast<size_t>(shape_numel(shape)), seed), shape);
}

// Calls fn(index) for every multi-index of `shape` in row-major order.
inline void for_each_index(const Shape& shape, const std::function<void(const Index&)>& fn) {
  int64_t n = shape_numel(shape);
  Index idx(shape.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    fn(idx);
    for (size_t d = shape.size(); d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

// Row-major linear index of `idx` in `shape`.
inline int64_t linear_index(const Shape& shape, const Index& idx) {
  int64_t at = 0;
  for (size_t d = 0; d < shape.size(); ++d) at = at * shape[d] + idx[d];
  return at;
}

inline const char* byte_ptr(const Tensor& t) { return static_cast<const char*>(t.data_ptr()); }

}  // namespace tessera::testing
