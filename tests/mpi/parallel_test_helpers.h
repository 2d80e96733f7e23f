// Helpers shared by the tensor-parallel tests in tests/mpi: a relative error for comparing a
// parallel run against the single-rank one, seeded random tensors, and the check that an error
// is one line naming its reason.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/ops/random_ops.h"

namespace tessera::testing {

// max |got - expected| / max |expected| (shapes must match).
inline double relative_error(const Tensor& got, const Tensor& expected) {
  EXPECT_EQ(got.shape(), expected.shape());
  std::vector<double> a = got.to_vector<double>(), b = expected.to_vector<double>();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

// Uniform in [-1, 1), f32, from `generator`.
inline Tensor random_tensor(const Shape& shape, Generator& generator) {
  Tensor t = Tensor::empty(shape);
  return uniform_(t, generator, -1.0, 1.0);
}

template <typename Build>
void expect_rejected(Build build, const std::string& reason) {
  try {
    build();
    ADD_FAILURE() << "expected an error containing '" << reason << "'";
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find(reason), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
  }
}

}  // namespace tessera::testing
