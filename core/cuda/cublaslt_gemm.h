// GEMM through cuBLASLt for one device: bf16/f16/f32/f64 operands (f32 accumulation for the
// 16-bit types, plain f32 without TF32 for f32, f64 for f64), batched with stride-0 broadcast
// of a batch of one, bias and GELU epilogues fused into the GEMM (f64 GELU unfused, for
// accuracy). Per configuration (dtype, shape, transposes, epilogue, pointer alignments) the
// first call asks cuBLASLt's heuristic for its top algorithms, times each in a few bursts on
// the real operands (waiting for the stream) and caches the fastest with its descriptors. A
// 32 MiB workspace is allocated once, in the constructor.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>

#include "core/backend.h"

namespace tessera {

class CublasLtGemm {
 public:
  CublasLtGemm(int device, cudaStream_t stream);
  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  // Same contract as Backend::gemm. Work is queued on the stream given to the constructor.
  void run(const Tensor& a, const Tensor& b, const Tensor& c, const GemmArgs& args);

  // How many distinct GEMM configurations have been planned (heuristic queries made).
  size_t plan_count() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace tessera
