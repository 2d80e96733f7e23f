// Helpers for GPU tests (label `gpu`): skip visibly without a GPU, poison outputs, compare a
// CUDA result with the CPU reference by normwise relative error (NaN anywhere fails).
#pragma once

#include <gtest/gtest.h>

#include "core/cuda/runtime.h"
#include "core/tensor.h"

// Skips the test, with a visible reason, where no GPU is visible (CI compiles GPU tests only).
#define TS_REQUIRE_GPU()                                                          \
  do {                                                                            \
    if (::tessera::cuda_device_count() == 0) GTEST_SKIP() << "no GPU visible"; \
  } while (0)

namespace tessera::testing {

// A tensor filled with NaN (integers: a large sentinel), so an unwritten output cannot pass.
Tensor poisoned(const Shape& shape, DType dtype, Device device);

// max |got - want| / max(max |want|, 1e-30), computed in f64 on the host; +inf if either
// holds a NaN or inf where the other does not, or the shapes differ.
double relative_error(const Tensor& got, const Tensor& want);

// The acceptance tolerance by dtype: f64 1e-12, f32 1e-5, f16 5e-3, bf16 2e-2.
double tolerance_for(DType dtype);

}  // namespace tessera::testing
