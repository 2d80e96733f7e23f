// Matrix products (through the backend's GEMM: OpenBLAS on CPU, cuBLASLt on GPU).
#pragma once

#include "core/tensor.h"

namespace tessera {

// a [..., M, K] @ b [K, N] -> [..., M, N]; or batched a [..., M, K] @ b [..., K, N] with
// broadcast batch dims.
Tensor matmul(const Tensor& a, const Tensor& b);
// x [..., in] @ weight[out, in]^T + bias[out] (bias may be undefined).
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {});
// linear(gelu(x), weight, bias) keeping x, not gelu(x), for the backward, which recomputes the
// GELU (one elementwise pass) instead of holding a second activation of x's size: for GPT-2
// 124M at 16 x 1024 tokens, 1.2 GB less at the peak. torch.compile's partitioner makes the same
// trade.
Tensor linear_of_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias = {});

}  // namespace tessera
