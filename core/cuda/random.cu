// PLACEHOLDER (helper-4 replaces this file): Philox random kernels.
#include "core/cuda/cuda_backend.h"
namespace tessera {
void CudaBackend::fill_uniform(const Tensor&, PhiloxState, double, double) { TS_CHECK(false, "fill_uniform: not implemented on CUDA yet"); }
void CudaBackend::fill_normal(const Tensor&, PhiloxState, double, double) { TS_CHECK(false, "fill_normal: not implemented on CUDA yet"); }
void CudaBackend::dropout(const Tensor&, double, PhiloxState, const Tensor&) { TS_CHECK(false, "dropout: not implemented on CUDA yet"); }
}  // namespace tessera
