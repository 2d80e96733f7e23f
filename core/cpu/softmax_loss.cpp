// CPU reference kernels for softmax over the last dim of [R, C] and for cross-entropy over
// logits [N, V] with targets [N] (i32/i64). y, dL_dx and dL_dlogits share the input's dtype;
// losses and dL_dlosses [N] are f32 (f64 for f64 logits). Arithmetic runs in acc_type<T>,
// max-subtracted so large logits do not overflow; outputs are written with =.
//   softmax backward:       dL_dx = y * (dL_dy - sum(dL_dy * y))
//   cross-entropy:          loss = logsumexp(logits) - logits[target], 0 where ignored
//   cross-entropy backward: dL_dlogits = (softmax - onehot(target)) * dL_dloss, 0 where ignored
#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/strided.h"

namespace tessera {
namespace {


void check_rows(std::string_view kernel, std::string_view name, const Tensor& x) {
  TS_CHECK(x.defined() && x.dim() == 2, kernel, ": expected ", name, " [R, C], got ",
           x.defined() ? shape_str(x.shape()) : "an undefined tensor");
}

// logsumexp of one row, max-subtracted.
template <typename Scalar, typename Acc = acc_type<Scalar>>
Acc row_logsumexp(const Scalar* x, int64_t C) {
  Acc max = -std::numeric_limits<Acc>::infinity();
  for (int64_t c = 0; c < C; ++c) max = std::max(max, Acc(x[c]));
  Acc sum = 0;
  for (int64_t c = 0; c < C; ++c) sum += std::exp(Acc(x[c]) - max);
  return max + std::log(sum);
}

// The target of row n, or -1 when the row is ignored; throws when it is outside [0, V).
template <typename Index>
int64_t row_target(std::string_view kernel, const Index* targets, int64_t n, int64_t V,
                   int64_t ignore_index) {
  const int64_t target = static_cast<int64_t>(targets[n]);
  if (target == ignore_index) return -1;
  TS_CHECK(target >= 0 && target < V, kernel, ": row ", n, " has target ", target,
           ", outside [0, V) with V = ", V, " (ignore_index ", ignore_index, ")");
  return target;
}

}  // namespace

void CpuBackend::softmax(const Tensor& x, const Tensor& y) {
  check_rows("softmax", "x", x);
  const int64_t R = x.size(0), C = x.size(1);
  dispatch_float(x.dtype(), "softmax", [&](auto tag) {
    using Scalar = decltype(tag);
    using Acc = acc_type<Scalar>;
    check_arg("softmax", "x", x, x.dtype(), {R, C});
    check_arg("softmax", "y", y, x.dtype(), {R, C});
    for (int64_t r = 0; r < R; ++r) {
      const Scalar* xr = x.data<Scalar>() + r * C;
      Scalar* yr = y.data<Scalar>() + r * C;
      const Acc lse = row_logsumexp(xr, C);
      for (int64_t c = 0; c < C; ++c) yr[c] = Scalar(std::exp(Acc(xr[c]) - lse));
    }
  });
}

void CpuBackend::softmax_backward(const Tensor& y, const Tensor& dL_dy, const Tensor& dL_dx) {
  check_rows("softmax_backward", "y", y);
  const int64_t R = y.size(0), C = y.size(1);
  dispatch_float(y.dtype(), "softmax_backward", [&](auto tag) {
    using Scalar = decltype(tag);
    using Acc = acc_type<Scalar>;
    check_arg("softmax_backward", "y", y, y.dtype(), {R, C});
    check_arg("softmax_backward", "dL_dy", dL_dy, y.dtype(), {R, C});
    check_arg("softmax_backward", "dL_dx", dL_dx, y.dtype(), {R, C});
    for (int64_t r = 0; r < R; ++r) {
      const Scalar* yr = y.data<Scalar>() + r * C;
      const Scalar* dyr = dL_dy.data<Scalar>() + r * C;
      Scalar* dxr = dL_dx.data<Scalar>() + r * C;
      Acc dot = 0;
      for (int64_t c = 0; c < C; ++c) dot += Acc(dyr[c]) * Acc(yr[c]);
      for (int64_t c = 0; c < C; ++c) dxr[c] = Scalar(Acc(yr[c]) * (Acc(dyr[c]) - dot));
    }
  });
}

void CpuBackend::cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                               const Tensor& losses) {
  check_rows("cross_entropy", "logits", logits);
  const int64_t N = logits.size(0), V = logits.size(1);
  dispatch_float(logits.dtype(), "cross_entropy", [&](auto tag) {
    using Scalar = decltype(tag);
    using Acc = acc_type<Scalar>;
    check_arg("cross_entropy", "logits", logits, logits.dtype(), {N, V});
    check_arg("cross_entropy", "targets", targets, targets.dtype(), {N});
    check_arg("cross_entropy", "losses", losses, dtype_of<Acc>(), {N});
    dispatch_index(targets.dtype(), "cross_entropy", [&](auto index_tag) {
      using Index = decltype(index_tag);
      for (int64_t n = 0; n < N; ++n) {
        const int64_t target =
            row_target("cross_entropy", targets.data<Index>(), n, V, ignore_index);
        const Scalar* row = logits.data<Scalar>() + n * V;
        losses.data<Acc>()[n] = target < 0 ? Acc(0) : row_logsumexp(row, V) - Acc(row[target]);
      }
    });
  });
}

void CpuBackend::cross_entropy_backward(const Tensor& logits, const Tensor& targets,
                                        int64_t ignore_index, const Tensor& dL_dlosses,
                                        const Tensor& dL_dlogits) {
  check_rows("cross_entropy_backward", "logits", logits);
  const int64_t N = logits.size(0), V = logits.size(1);
  dispatch_float(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using Scalar = decltype(tag);
    using Acc = acc_type<Scalar>;
    check_arg("cross_entropy_backward", "logits", logits, logits.dtype(), {N, V});
    check_arg("cross_entropy_backward", "targets", targets, targets.dtype(), {N});
    check_arg("cross_entropy_backward", "dL_dlosses", dL_dlosses, dtype_of<Acc>(), {N});
    check_arg("cross_entropy_backward", "dL_dlogits", dL_dlogits, logits.dtype(), {N, V});
    dispatch_index(targets.dtype(), "cross_entropy_backward", [&](auto index_tag) {
      using Index = decltype(index_tag);
      for (int64_t n = 0; n < N; ++n) {
        const int64_t target =
            row_target("cross_entropy_backward", targets.data<Index>(), n, V, ignore_index);
        const Scalar* row = logits.data<Scalar>() + n * V;
        Scalar* grad = dL_dlogits.data<Scalar>() + n * V;
        if (target < 0) {
          std::fill(grad, grad + V, Scalar(Acc(0)));
          continue;
        }
        const Acc lse = row_logsumexp(row, V), dloss = dL_dlosses.data<Acc>()[n];
        for (int64_t v = 0; v < V; ++v) {
          const Acc onehot = v == target ? Acc(1) : Acc(0);
          grad[v] = Scalar((std::exp(Acc(row[v]) - lse) - onehot) * dloss);
        }
      }
    });
  });
}

}  // namespace tessera
