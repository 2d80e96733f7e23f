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
// gelu_of_x: gelu(x) when the caller already has it (linear_and_gelu's activation); the
// forward then skips its own GELU pass.
Tensor linear_of_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias = {}, const Tensor& gelu_of_x = {});

// linear(swiglu(gate, up), weight, bias) of a packed x [..., 2F] (each row its gate, then its
// up: a column-parallel SwiGLU fc1's output), weight [out, F]. Keeps x, not the SwiGLU's output
// nor split copies of the halves, for the backward, which recomputes the SwiGLU (one pass).
Tensor linear_of_swiglu(const Tensor& x, const Tensor& weight, const Tensor& bias = {});

// linear(x, weight, bias) and its GELU from one GEMM (the GELU in its epilogue, which also
// writes the pre-activation): pre_activation is differentiable as linear's output is;
// activation = gelu(pre_activation) is a detached value, for linear_of_gelu's gelu_of_x.
struct LinearAndGelu {
  Tensor pre_activation;
  Tensor activation;
};
LinearAndGelu linear_and_gelu(const Tensor& x, const Tensor& weight, const Tensor& bias = {});

}  // namespace tessera
