// PLACEHOLDER (helper-4 replaces this file): embedding kernels.
#include "core/cuda/cuda_backend.h"
namespace tessera {
void CudaBackend::embedding(const Tensor&, const Tensor&, const Tensor&) { TS_CHECK(false, "embedding: not implemented on CUDA yet"); }
void CudaBackend::embedding_backward_accumulate(const Tensor&, const Tensor&, const Tensor&, bool) { TS_CHECK(false, "embedding_backward_accumulate: not implemented on CUDA yet"); }
}  // namespace tessera
