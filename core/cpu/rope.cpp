// CPU reference kernel for rotary position embedding on x [B, T, H, D] (D even), with
// cos/sin [T, D/2] f32 (f64 for f64 x); out has x's shape and dtype and may be x itself.
// Pairs (i, i + D/2) rotate by angle_ti (the Llama / NeoX "rotate half" layout):
//   out_i = x_i cos - x_{i+D/2} sin,   out_{i+D/2} = x_{i+D/2} cos + x_i sin.
// inverse rotates by -angle (sin -> -sin), which is also the backward.
#include <string_view>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/strided.h"

namespace tessera {
namespace {


}  // namespace

void CpuBackend::rope(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse,
                      const Tensor& out) {
  TS_CHECK(x.defined() && x.dim() == 4, "rope: expected x [B, T, H, D], got ",
           x.defined() ? shape_str(x.shape()) : "an undefined tensor");
  const int64_t B = x.size(0), T = x.size(1), H = x.size(2), D = x.size(3), half = D / 2;
  TS_CHECK(D % 2 == 0, "rope: head dim D must be even, got x ", shape_str(x.shape()));
  dispatch_float(x.dtype(), "rope", [&](auto tag) {
    using Scalar = decltype(tag);
    using Acc = acc_type<Scalar>;
    check_arg("rope", "x", x, x.dtype(), {B, T, H, D});
    check_arg("rope", "cos", cos, dtype_of<Acc>(), {T, half});
    check_arg("rope", "sin", sin, dtype_of<Acc>(), {T, half});
    check_arg("rope", "out", out, x.dtype(), {B, T, H, D});
    const Acc sign = inverse ? Acc(-1) : Acc(1);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t t = 0; t < T; ++t) {
        const Acc* cos_t = cos.data<Acc>() + t * half;
        const Acc* sin_t = sin.data<Acc>() + t * half;
        for (int64_t h = 0; h < H; ++h) {
          const Scalar* xr = x.data<Scalar>() + ((b * T + t) * H + h) * D;
          Scalar* outr = out.data<Scalar>() + ((b * T + t) * H + h) * D;
          for (int64_t i = 0; i < half; ++i) {
            const Acc x1 = Acc(xr[i]), x2 = Acc(xr[i + half]);
            const Acc c = cos_t[i], s = sign * sin_t[i];
            outr[i] = Scalar(x1 * c - x2 * s);
            outr[i + half] = Scalar(x2 * c + x1 * s);
          }
        }
      }
    }
  });
}

}  // namespace tessera
