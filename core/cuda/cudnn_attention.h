// Fused causal/non-causal scaled-dot-product attention (flash attention) forward and backward
// for one device, through cuDNN's fused-attention engines (core/cuda/cudnn_attention.cpp).
// Same contract as Backend::attention / attention_backward, for bf16 and f16 inputs with a head
// dim that is a multiple of 8 up to 256; other inputs, and shapes cuDNN has no engine for, throw.
// Execution plans are cached per shape; not thread-safe (like the stream it runs on).
#pragma once

#include <cuda_runtime_api.h>

#include "core/backend.h"

namespace tessera {

class CudnnAttention {
 public:
  CudnnAttention(int device, cudaStream_t stream);
  ~CudnnAttention();
  CudnnAttention(const CudnnAttention&) = delete;
  CudnnAttention& operator=(const CudnnAttention&) = delete;

  void forward(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale, const Tensor& out,
               const Tensor& lse);
  void backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                const Tensor& dL_dout, bool causal, double scale, const Tensor& dL_dq, const Tensor& dL_dk,
                const Tensor& dL_dv);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tessera
