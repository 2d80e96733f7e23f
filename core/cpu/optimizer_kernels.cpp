// PLACEHOLDER: being written (CPU AdamW, sum of squares, unscale/check, fused cross-entropy).
#include "core/cpu/cpu_backend.h"

namespace tessera {

void CpuBackend::cross_entropy_fused(const Tensor&, const Tensor&, int64_t, const Tensor&, const Tensor&,
                                     const Tensor&) {
  TS_CHECK(false, "cross_entropy_fused: not implemented yet");
}
void CpuBackend::adamw(const std::vector<AdamWParam>&, const AdamWHyper&) { TS_CHECK(false, "adamw: not implemented yet"); }
void CpuBackend::sum_squares(const std::vector<Tensor>&, const Tensor&) { TS_CHECK(false, "sum_squares: not implemented yet"); }
void CpuBackend::unscale_and_check_finite(const std::vector<Tensor>&, double, const Tensor&) {
  TS_CHECK(false, "unscale_and_check_finite: not implemented yet");
}

}  // namespace tessera
