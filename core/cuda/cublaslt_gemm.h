// GEMM through cuBLASLt for one device: bf16/f16/f32 operands, f32 accumulation, batched,
// bias and GELU epilogues; the algorithm heuristic is asked once per shape and cached.
#pragma once

#include <cuda_runtime_api.h>

#include "core/backend.h"

namespace tessera {

class CublasLtGemm {
 public:
  CublasLtGemm(int device, cudaStream_t stream);
  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  // Same contract as Backend::gemm.
  void run(const Tensor& a, const Tensor& b, const Tensor& c, const GemmArgs& args);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tessera
