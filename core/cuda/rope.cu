// PLACEHOLDER (helper-5 replaces this file): rotary embedding.
#include "core/cuda/cuda_backend.h"
namespace tessera {
void CudaBackend::rope(const Tensor&, const Tensor&, const Tensor&, bool, const Tensor&) { TS_CHECK(false, "rope: not implemented on CUDA yet"); }
}  // namespace tessera
