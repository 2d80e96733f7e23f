// Fused causal/non-causal scaled-dot-product attention (flash attention) forward and backward
// for one device. Same contract as Backend::attention / attention_backward.
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
