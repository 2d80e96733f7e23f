// CPU reference kernels for layer norm and RMS norm over the last dim of x [R, C].
// weight and bias [C], y, dL_dx, dL_dweight and dL_dbias share x's dtype; mean and rstd [R]
// are f32 (f64 for f64 x). Arithmetic runs in acc_type<T>; every output is written with =
// (dL_dweight and dL_dbias are summed over the R rows, then stored).
//   layer norm: xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps) (biased var),
//               y = xhat * weight + bias
//   RMS norm:   xhat = x * rstd, rstd = 1 / sqrt(mean(x^2) + eps), y = xhat * weight
// With a residual, the normalised input is h = x + residual, also written to residual_out;
// backward adds the gradient arriving at residual_out into dL_dh.
#include <cmath>
#include <string_view>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/strided.h"

namespace tessera {
namespace {


void check_rows(std::string_view kernel, const Tensor& x) {
  TS_CHECK(x.defined() && x.dim() == 2, kernel, ": expected x [R, C], got ",
           x.defined() ? shape_str(x.shape()) : "an undefined tensor");
}

// h = x + residual into residual_out when a residual is given; returns the tensor to normalise.
Tensor add_residual(CpuBackend& backend, std::string_view kernel, const Tensor& x, const Tensor& residual,
                    const Tensor& residual_out) {
  if (!residual.defined()) return x;
  check_arg(kernel, "residual", residual, x.dtype(), x.shape());
  check_arg(kernel, "residual_out", residual_out, x.dtype(), x.shape());
  backend.binary(BinaryOp::Add, x, residual, residual_out);
  return residual_out;
}

}  // namespace

void CpuBackend::layer_norm(const Tensor& x_in, const Tensor& residual, const Tensor& weight, const Tensor& bias,
                            double eps, const Tensor& y, const Tensor& residual_out, const Tensor& mean,
                            const Tensor& rstd) {
  check_rows("layer_norm", x_in);
  const Tensor x = add_residual(*this, "layer_norm", x_in, residual, residual_out);
  const int64_t R = x.size(0), C = x.size(1);
  dispatch_float(x.dtype(), "layer_norm", [&](auto tag) {
    using Scalar = decltype(tag);
    using Acc = acc_type<Scalar>;
    constexpr DType stats = dtype_of<Acc>();
    check_arg("layer_norm", "x", x, x.dtype(), {R, C});
    check_arg("layer_norm", "weight", weight, x.dtype(), {C});
    if (bias.defined()) check_arg("layer_norm", "bias", bias, x.dtype(), {C});
    check_arg("layer_norm", "y", y, x.dtype(), {R, C});
    check_arg("layer_norm", "mean", mean, stats, {R});
    check_arg("layer_norm", "rstd", rstd, stats, {R});
    const Scalar* w = weight.data<Scalar>();
    const Scalar* b = bias.defined() ? bias.data<Scalar>() : nullptr;
    for (int64_t r = 0; r < R; ++r) {
      const Scalar* xr = x.data<Scalar>() + r * C;
      Scalar* yr = y.data<Scalar>() + r * C;
      Acc m = 0;
      for (int64_t c = 0; c < C; ++c) m += Acc(xr[c]);
      m /= Acc(C);
      Acc var = 0;
      for (int64_t c = 0; c < C; ++c) var += (Acc(xr[c]) - m) * (Acc(xr[c]) - m);
      var /= Acc(C);
      const Acc s = Acc(1) / std::sqrt(var + Acc(eps));
      for (int64_t c = 0; c < C; ++c) {
        const Acc shift = b ? Acc(b[c]) : Acc(0);
        yr[c] = Scalar((Acc(xr[c]) - m) * s * Acc(w[c]) + shift);
      }
      mean.data<Acc>()[r] = m;
      rstd.data<Acc>()[r] = s;
    }
  });
}

// dxhat = dL_dy * weight; dL_dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)).
void CpuBackend::layer_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& mean,
                                     const Tensor& rstd, const Tensor& dL_dy, const Tensor& dL_dresidual_out,
                                     const Tensor& dL_dx, const Tensor& dL_dweight, const Tensor& dL_dbias) {
  check_rows("layer_norm_backward", x);
  const int64_t R = x.size(0), C = x.size(1);
  dispatch_float(x.dtype(), "layer_norm_backward", [&](auto tag) {
    using Scalar = decltype(tag);
    using Acc = acc_type<Scalar>;
    constexpr DType stats = dtype_of<Acc>();
    check_arg("layer_norm_backward", "x", x, x.dtype(), {R, C});
    check_arg("layer_norm_backward", "weight", weight, x.dtype(), {C});
    check_arg("layer_norm_backward", "mean", mean, stats, {R});
    check_arg("layer_norm_backward", "rstd", rstd, stats, {R});
    check_arg("layer_norm_backward", "dL_dy", dL_dy, x.dtype(), {R, C});
    check_arg("layer_norm_backward", "dL_dx", dL_dx, x.dtype(), {R, C});
    check_arg("layer_norm_backward", "dL_dweight", dL_dweight, x.dtype(), {C});
    if (dL_dbias.defined()) check_arg("layer_norm_backward", "dL_dbias", dL_dbias, x.dtype(), {C});
    if (dL_dresidual_out.defined())
      check_arg("layer_norm_backward", "dL_dresidual_out", dL_dresidual_out, x.dtype(), {R, C});
    const Scalar* w = weight.data<Scalar>();
    std::vector<Acc> dw(C, Acc(0)), db(C, Acc(0));
    for (int64_t r = 0; r < R; ++r) {
      const Scalar* xr = x.data<Scalar>() + r * C;
      const Scalar* dyr = dL_dy.data<Scalar>() + r * C;
      Scalar* dxr = dL_dx.data<Scalar>() + r * C;
      const Acc m = mean.data<Acc>()[r], s = rstd.data<Acc>()[r];
      Acc sum_g = 0, sum_gx = 0;  // sums of dxhat and dxhat * xhat over the row
      for (int64_t c = 0; c < C; ++c) {
        const Acc xhat = (Acc(xr[c]) - m) * s, dy = Acc(dyr[c]);
        sum_g += dy * Acc(w[c]);
        sum_gx += dy * Acc(w[c]) * xhat;
        dw[c] += dy * xhat;
        db[c] += dy;
      }
      const Acc mean_g = sum_g / Acc(C), mean_gx = sum_gx / Acc(C);
      for (int64_t c = 0; c < C; ++c) {
        const Acc xhat = (Acc(xr[c]) - m) * s;
        const Acc through_residual = dL_dresidual_out.defined() ? Acc(dL_dresidual_out.data<Scalar>()[r * C + c]) : Acc(0);
        dxr[c] = Scalar(s * (Acc(dyr[c]) * Acc(w[c]) - mean_g - xhat * mean_gx) + through_residual);
      }
    }
    for (int64_t c = 0; c < C; ++c) {
      dL_dweight.data<Scalar>()[c] = Scalar(dw[c]);
      if (dL_dbias.defined()) dL_dbias.data<Scalar>()[c] = Scalar(db[c]);
    }
  });
}

void CpuBackend::rms_norm(const Tensor& x_in, const Tensor& residual, const Tensor& weight, double eps,
                          const Tensor& y, const Tensor& residual_out, const Tensor& rstd) {
  check_rows("rms_norm", x_in);
  const Tensor x = add_residual(*this, "rms_norm", x_in, residual, residual_out);
  const int64_t R = x.size(0), C = x.size(1);
  dispatch_float(x.dtype(), "rms_norm", [&](auto tag) {
    using Scalar = decltype(tag);
    using Acc = acc_type<Scalar>;
    check_arg("rms_norm", "x", x, x.dtype(), {R, C});
    check_arg("rms_norm", "weight", weight, x.dtype(), {C});
    check_arg("rms_norm", "y", y, x.dtype(), {R, C});
    check_arg("rms_norm", "rstd", rstd, dtype_of<Acc>(), {R});
    const Scalar* w = weight.data<Scalar>();
    for (int64_t r = 0; r < R; ++r) {
      const Scalar* xr = x.data<Scalar>() + r * C;
      Scalar* yr = y.data<Scalar>() + r * C;
      Acc sum_sq = 0;
      for (int64_t c = 0; c < C; ++c) sum_sq += Acc(xr[c]) * Acc(xr[c]);
      const Acc s = Acc(1) / std::sqrt(sum_sq / Acc(C) + Acc(eps));
      for (int64_t c = 0; c < C; ++c) yr[c] = Scalar(Acc(xr[c]) * s * Acc(w[c]));
      rstd.data<Acc>()[r] = s;
    }
  });
}

// dxhat = dL_dy * weight; dL_dx = rstd * (dxhat - xhat * mean(dxhat * xhat)).
void CpuBackend::rms_norm_backward(const Tensor& x, const Tensor& weight, const Tensor& rstd,
                                   const Tensor& dL_dy, const Tensor& dL_dresidual_out, const Tensor& dL_dx,
                                   const Tensor& dL_dweight) {
  check_rows("rms_norm_backward", x);
  const int64_t R = x.size(0), C = x.size(1);
  dispatch_float(x.dtype(), "rms_norm_backward", [&](auto tag) {
    using Scalar = decltype(tag);
    using Acc = acc_type<Scalar>;
    check_arg("rms_norm_backward", "x", x, x.dtype(), {R, C});
    check_arg("rms_norm_backward", "weight", weight, x.dtype(), {C});
    check_arg("rms_norm_backward", "rstd", rstd, dtype_of<Acc>(), {R});
    check_arg("rms_norm_backward", "dL_dy", dL_dy, x.dtype(), {R, C});
    check_arg("rms_norm_backward", "dL_dx", dL_dx, x.dtype(), {R, C});
    check_arg("rms_norm_backward", "dL_dweight", dL_dweight, x.dtype(), {C});
    if (dL_dresidual_out.defined())
      check_arg("rms_norm_backward", "dL_dresidual_out", dL_dresidual_out, x.dtype(), {R, C});
    const Scalar* w = weight.data<Scalar>();
    std::vector<Acc> dw(C, Acc(0));
    for (int64_t r = 0; r < R; ++r) {
      const Scalar* xr = x.data<Scalar>() + r * C;
      const Scalar* dyr = dL_dy.data<Scalar>() + r * C;
      Scalar* dxr = dL_dx.data<Scalar>() + r * C;
      const Acc s = rstd.data<Acc>()[r];
      Acc sum_gx = 0;  // sum of dxhat * xhat over the row
      for (int64_t c = 0; c < C; ++c) {
        const Acc xhat = Acc(xr[c]) * s, dy = Acc(dyr[c]);
        sum_gx += dy * Acc(w[c]) * xhat;
        dw[c] += dy * xhat;
      }
      const Acc mean_gx = sum_gx / Acc(C);
      for (int64_t c = 0; c < C; ++c) {
        const Acc through_residual = dL_dresidual_out.defined() ? Acc(dL_dresidual_out.data<Scalar>()[r * C + c]) : Acc(0);
        dxr[c] = Scalar(s * (Acc(dyr[c]) * Acc(w[c]) - Acc(xr[c]) * s * mean_gx) + through_residual);
      }
    }
    for (int64_t c = 0; c < C; ++c) dL_dweight.data<Scalar>()[c] = Scalar(dw[c]);
  });
}

}  // namespace tessera
