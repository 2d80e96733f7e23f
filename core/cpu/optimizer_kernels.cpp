// CPU reference kernels of the training step's fused tail: cross-entropy forward and backward
// in one pass over the logits, multi-tensor AdamW, the sum of squares behind the global
// gradient norm, and the unscale-and-check of fp16 dynamic loss scaling.
//   cross_entropy_fused: losses[n] = logsumexp(row) - row[target]; dL_dlogits[n] =
//     (softmax(row) - onehot(target)) * dL_dlosses[n]; 0 on ignored rows. dL_dlogits may be
//     logits itself. Every target is validated before anything is written.
//   adamw (PyTorch AdamW, computed in f64 per element, state stored in f32):
//     g = grad / grad_scale; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
//     m_hat = m / (1 - b1^step); v_hat = v / (1 - b2^step);
//     p -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * p); model_copy = p rounded.
//   sum_squares: out[0] = sum over the tensors of x^2, accumulated in f64.
//   unscale_and_check_finite: x = x * inv_scale in acc_type<T>; found_inf = 1 if a result is
//     inf or NaN, left as it was otherwise.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <string_view>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/strided.h"
#include "core/kernel_args.h"

namespace tessera {
namespace {

// logsumexp of one row, max-subtracted.
template <typename Scalar, typename Acc = acc_type<Scalar>>
Acc row_logsumexp(const Scalar* x, int64_t C) {
  Acc max = -std::numeric_limits<Acc>::infinity();
  for (int64_t c = 0; c < C; ++c) max = std::max(max, Acc(x[c]));
  Acc sum = 0;
  for (int64_t c = 0; c < C; ++c) sum += std::exp(Acc(x[c]) - max);
  return max + std::log(sum);
}

template <typename Grad, typename Copy>
void adamw_tensor(const AdamWParam& p, const AdamWHyper& h, double bias1, double bias2) {
  const int64_t n = p.master.numel();
  float* master = p.master.data<float>();
  float* m = p.exp_avg.data<float>();
  float* v = p.exp_avg_sq.data<float>();
  const Grad* grad = p.grad.data<Grad>();
  Copy* copy = p.model_copy.defined() ? p.model_copy.data<Copy>() : nullptr;
  for (int64_t i = 0; i < n; ++i) {
    const double g = double(grad[i]) / h.grad_scale;
    const double mi = h.beta1 * double(m[i]) + (1.0 - h.beta1) * g;
    const double vi = h.beta2 * double(v[i]) + (1.0 - h.beta2) * g * g;
    const double pi = double(master[i]);
    const double update = (mi / bias1) / (std::sqrt(vi / bias2) + h.eps) + h.weight_decay * pi;
    m[i] = float(mi);
    v[i] = float(vi);
    master[i] = float(pi - h.lr * update);
    if (copy) copy[i] = Copy(master[i]);
  }
}

}  // namespace

void CpuBackend::cross_entropy_fused(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                     const Tensor& dL_dlosses, const Tensor& losses, const Tensor& dL_dlogits) {
  constexpr std::string_view kernel = "cross_entropy_fused";
  TS_CHECK(logits.defined() && logits.dim() == 2, kernel, ": expected logits [N, V], got ",
           logits.defined() ? shape_str(logits.shape()) : "an undefined tensor");
  const int64_t N = logits.size(0), V = logits.size(1);
  dispatch_float(logits.dtype(), kernel, [&](auto tag) {
    using Scalar = decltype(tag);
    using Acc = acc_type<Scalar>;
    check_arg(kernel, "logits", logits, logits.dtype(), {N, V});
    check_arg(kernel, "targets", targets, targets.dtype(), {N});
    check_arg(kernel, "dL_dlosses", dL_dlosses, dtype_of<Acc>(), {N});
    check_arg(kernel, "losses", losses, dtype_of<Acc>(), {N});
    check_arg(kernel, "dL_dlogits", dL_dlogits, logits.dtype(), {N, V});
    dispatch_index(targets.dtype(), kernel, [&](auto index_tag) {
      using Index = decltype(index_tag);
      const Index* target_of = targets.data<Index>();
      for (int64_t n = 0; n < N; ++n) {  // all targets first: a throw leaves aliased logits intact
        const int64_t target = static_cast<int64_t>(target_of[n]);
        TS_CHECK(target == ignore_index || (target >= 0 && target < V), kernel, ": row ", n, " has target ",
                 target, ", outside [0, V) with V = ", V, " (ignore_index ", ignore_index, ")");
      }
      for (int64_t n = 0; n < N; ++n) {
        const int64_t target = static_cast<int64_t>(target_of[n]);
        const Scalar* row = logits.data<Scalar>() + n * V;
        Scalar* grad = dL_dlogits.data<Scalar>() + n * V;
        if (target == ignore_index) {
          losses.data<Acc>()[n] = Acc(0);
          std::fill(grad, grad + V, Scalar(Acc(0)));
          continue;
        }
        const Acc lse = row_logsumexp(row, V), dloss = dL_dlosses.data<Acc>()[n];
        losses.data<Acc>()[n] = lse - Acc(row[target]);  // read before the row is overwritten
        for (int64_t v = 0; v < V; ++v) {
          const Acc onehot = v == target ? Acc(1) : Acc(0);
          grad[v] = Scalar((std::exp(Acc(row[v]) - lse) - onehot) * dloss);
        }
      }
    });
  });
}

void CpuBackend::adamw(const std::vector<AdamWParam>& params, const AdamWHyper& hyper) {
  check_adamw_hyper(hyper);
  for (size_t i = 0; i < params.size(); ++i) {
    const AdamWParam& p = params[i];
    const std::string at = "adamw: param " + std::to_string(i);
    TS_CHECK(p.master.defined(), at, ": master is undefined");
    const Shape& shape = p.master.shape();
    check_arg(at, "master", p.master, DType::F32, shape);
    check_arg(at, "exp_avg", p.exp_avg, DType::F32, shape);
    check_arg(at, "exp_avg_sq", p.exp_avg_sq, DType::F32, shape);
    TS_CHECK(p.grad.defined() && (p.grad.dtype() == DType::F32 || p.grad.dtype() == DType::BF16 ||
                                  p.grad.dtype() == DType::F16),
             at, ": grad must be f32, bf16 or f16, got ", p.grad.defined() ? dtype_name(p.grad.dtype()) : "undefined");
    check_arg(at, "grad", p.grad, p.grad.dtype(), shape);
    if (p.model_copy.defined()) {
      TS_CHECK(p.model_copy.dtype() == DType::BF16 || p.model_copy.dtype() == DType::F16, at,
               ": model_copy must be bf16 or f16, got ", dtype_name(p.model_copy.dtype()));
      check_arg(at, "model_copy", p.model_copy, p.model_copy.dtype(), shape);
    }
  }
  const double bias1 = 1.0 - std::pow(hyper.beta1, double(hyper.step));
  const double bias2 = 1.0 - std::pow(hyper.beta2, double(hyper.step));
  for (const AdamWParam& p : params) {
    const DType copy = p.model_copy.defined() ? p.model_copy.dtype() : DType::BF16;
    dispatch_float(p.grad.dtype(), "adamw", [&](auto grad_tag) {
      using Grad = decltype(grad_tag);
      if (copy == DType::BF16) adamw_tensor<Grad, BFloat16>(p, hyper, bias1, bias2);
      else adamw_tensor<Grad, Half>(p, hyper, bias1, bias2);
    });
  }
}

void CpuBackend::sum_squares(const std::vector<Tensor>& tensors, const Tensor& out) {
  check_arg("sum_squares", "out", out, DType::F32, {1});
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::string name = "tensor " + std::to_string(i);
    TS_CHECK(tensors[i].defined(), "sum_squares: ", name, " is undefined");
    check_arg("sum_squares", name, tensors[i], tensors[i].dtype(), tensors[i].shape());
  }
  double total = 0.0;
  for (const Tensor& t : tensors) {
    dispatch_float(t.dtype(), "sum_squares", [&](auto tag) {
      using Scalar = decltype(tag);
      const Scalar* x = t.data<Scalar>();
      for (int64_t i = 0; i < t.numel(); ++i) total += double(x[i]) * double(x[i]);
    });
  }
  out.data<float>()[0] = float(total);
}

void CpuBackend::unscale_and_check_finite(const std::vector<Tensor>& tensors, double inv_scale,
                                          const Tensor& found_inf) {
  check_arg("unscale_and_check_finite", "found_inf", found_inf, DType::F32, {1});
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::string name = "tensor " + std::to_string(i);
    TS_CHECK(tensors[i].defined(), "unscale_and_check_finite: ", name, " is undefined");
    check_arg("unscale_and_check_finite", name, tensors[i], tensors[i].dtype(), tensors[i].shape());
  }
  bool found = false;
  for (const Tensor& t : tensors) {
    dispatch_float(t.dtype(), "unscale_and_check_finite", [&](auto tag) {
      using Scalar = decltype(tag);
      using Acc = acc_type<Scalar>;
      Scalar* x = t.data<Scalar>();
      for (int64_t i = 0; i < t.numel(); ++i) {
        x[i] = Scalar(Acc(x[i]) * Acc(inv_scale));
        if (!std::isfinite(Acc(x[i]))) found = true;
      }
    });
  }
  if (found) found_inf.data<float>()[0] = 1.0f;
}

}  // namespace tessera
