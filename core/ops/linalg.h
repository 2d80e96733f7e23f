// Matrix products (through the backend's GEMM: OpenBLAS on CPU, cuBLASLt on GPU).
#pragma once

#include "core/tensor.h"

namespace tessera {

// a [..., M, K] @ b [K, N] -> [..., M, N]; or batched a [..., M, K] @ b [..., K, N] with
// broadcast batch dims.
Tensor matmul(const Tensor& a, const Tensor& b);
// x [..., in] @ weight[out, in]^T + bias[out] (bias may be undefined).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {});

}  // namespace tessera
