// PLACEHOLDER (helper-5 replaces this file): AdamW, sum of squares, unscale/check.
#include "core/cuda/cuda_backend.h"
namespace tessera {
void CudaBackend::adamw(const std::vector<AdamWParam>&, const AdamWHyper&) { TS_CHECK(false, "adamw: not implemented on CUDA yet"); }
void CudaBackend::sum_squares(const std::vector<Tensor>&, const Tensor&) { TS_CHECK(false, "sum_squares: not implemented on CUDA yet"); }
void CudaBackend::unscale_and_check_finite(const std::vector<Tensor>&, double, const Tensor&) { TS_CHECK(false, "unscale_and_check_finite: not implemented on CUDA yet"); }
}  // namespace tessera
