// The operand checks every GEMM backend shares: a [batch_a, M, K] (or its transpose), b
// [batch_b, K, N] (or its transpose), c [batch, M, N]; 2-D operands are a batch of one, and a
// batch of one broadcasts. Messages name "gemm" and all three shapes.
#pragma once

#include <cstdint>
#include <string>

#include "core/backend.h"

namespace tessera {

struct GemmSize {
  int64_t batch, batch_a, batch_b, m, n, k;
};

// Checks ranks, contiguity, dtypes, inner dimensions and batch counts; returns the sizes.
GemmSize check_gemm_operands(const Tensor& a, const Tensor& b, const Tensor& c, const GemmArgs& args);
// "a [2, 3] (transposed), b [...], c [...]" for error messages.
std::string gemm_shapes(const Tensor& a, const Tensor& b, const Tensor& c, const GemmArgs& args);

}  // namespace tessera
