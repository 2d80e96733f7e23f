// CPU reference for the memory kernels: copy (strided -> strided, any dtype to any dtype) and
// fill (strided). Host to host only; copies that cross a device belong to the CUDA backend.
#include <cstring>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/strided.h"

namespace tessera {

void CpuBackend::copy(const Tensor& src, const Tensor& dst) {
  TS_CHECK(src.device().is_cpu() && dst.device().is_cpu(), "copy: the CPU backend copies host to host (src on ",
           src.device(), ", dst on ", dst.device(), "); the CUDA backend handles cross-device copies");
  TS_CHECK(src.shape() == dst.shape(), "copy: src shape ", shape_str(src.shape()), " differs from dst shape ",
           shape_str(dst.shape()));
  int64_t n = dst.numel();
  if (n == 0) return;
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    std::memmove(dst.data_ptr(), src.data_ptr(), static_cast<size_t>(n) * dtype_size(dst.dtype()));
    return;
  }
  dispatch_all(src.dtype(), [&](auto s) {
    using S = decltype(s);
    dispatch_all(dst.dtype(), [&](auto d) {
      using D = decltype(d);
      StridedView<S> in(src);
      StridedView<D> out(dst);
      for (int64_t i = 0; i < n; ++i) out[i] = convert<D>(in[i]);
    });
  });
}

void CpuBackend::fill(const Tensor& dst, double value) {
  int64_t n = dst.numel();
  dispatch_all(dst.dtype(), [&](auto d) {
    using D = decltype(d);
    D v = convert<D>(value);
    StridedView<D> out(dst);
    for (int64_t i = 0; i < n; ++i) out[i] = v;
  });
}

}  // namespace tessera
