// CPU reference kernels for scaled dot-product attention with grouped-query heads.
// q, out, dL_dout, dL_dq [B, Tq, H, D]; k, v, dL_dk, dL_dv [B, Tk, KV, D] with Tq <= Tk, all
// one dtype; lse [B, H, Tq] is f32 (f64 for f64 inputs). Query head h reads kv head h / (H / KV).
// The queries are the last Tq positions of the keys (bottom-right aligned: query i sits at
// position i + Tk - Tq, as when decoding with a KV cache); causal masks key j > i + Tk - Tq.
// Arithmetic runs in acc_type<T>, one query row at a time:
//   s_ij = scale * q_i . k_j,  lse_i = logsumexp_j s_ij,  p_ij = exp(s_ij - lse_i),
//   out_i = sum_j p_ij v_j.
// Backward recomputes p from the saved lse (FlashAttention-style), with delta_i = dO_i . O_i:
//   dp_ij = dO_i . v_j,  ds_ij = p_ij (dp_ij - delta_i),  dQ_i = scale sum_j ds_ij k_j,
//   dK_j = scale sum_i ds_ij q_i,  dV_j = sum_i p_ij dO_i
// (dK and dV summed over the query heads that share a kv head). Outputs are written with =.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/strided.h"

namespace tessera {
namespace {


// Dimensions of one attention call, read from q [B, Tq, H, D] and k [B, Tk, KV, D].
struct AttentionDims {
  int64_t B, Tq, Tk, H, KV, D;

  // Element offset of query row (b, t, head) in a [B, Tq, H, D] tensor ...
  int64_t query_row(int64_t b, int64_t t, int64_t head) const { return ((b * Tq + t) * H + head) * D; }
  // ... and of key row (b, t, kv head) in a [B, Tk, KV, D] tensor.
  int64_t key_row(int64_t b, int64_t t, int64_t kv_head) const { return ((b * Tk + t) * KV + kv_head) * D; }
  // How many keys query i sees: all, or (causal) those up to its position i + Tk - Tq.
  int64_t visible_keys(int64_t i, bool causal) const { return causal ? i + Tk - Tq + 1 : Tk; }
};

AttentionDims attention_dims(std::string_view kernel, const Tensor& q, const Tensor& k) {
  TS_CHECK(q.defined() && q.dim() == 4, kernel, ": expected q [B, Tq, H, D], got ",
           q.defined() ? shape_str(q.shape()) : "an undefined tensor");
  TS_CHECK(k.defined() && k.dim() == 4, kernel, ": expected k [B, Tk, KV, D], got ",
           k.defined() ? shape_str(k.shape()) : "an undefined tensor");
  AttentionDims d{q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3)};
  TS_CHECK(d.KV > 0 && d.H % d.KV == 0, kernel, ": query heads H = ", d.H,
           " must be a multiple of kv heads KV = ", d.KV, " (q ", shape_str(q.shape()), ", k ",
           shape_str(k.shape()), ")");
  TS_CHECK(d.Tq <= d.Tk, kernel, ": q ", shape_str(q.shape()), " has more positions (Tq = ", d.Tq,
           ") than k ", shape_str(k.shape()), " (Tk = ", d.Tk,
           "); the queries are the last Tq of the Tk positions");
  return d;
}

template <typename Scalar, typename Acc = acc_type<Scalar>>
Acc dot(const Scalar* a, const Scalar* b, int64_t D) {
  Acc sum = 0;
  for (int64_t d = 0; d < D; ++d) sum += Acc(a[d]) * Acc(b[d]);
  return sum;
}

}  // namespace

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                           double scale, const Tensor& out, const Tensor& lse) {
  const AttentionDims dims = attention_dims("attention", q, k);
  const auto [B, Tq, Tk, H, KV, D] = dims;
  dispatch_float(q.dtype(), "attention", [&](auto tag) {
    using Scalar = decltype(tag);
    using Acc = acc_type<Scalar>;
    check_arg("attention", "q", q, q.dtype(), {B, Tq, H, D});
    check_arg("attention", "k", k, q.dtype(), {B, Tk, KV, D});
    check_arg("attention", "v", v, q.dtype(), {B, Tk, KV, D});
    check_arg("attention", "out", out, q.dtype(), {B, Tq, H, D});
    check_arg("attention", "lse", lse, dtype_of<Acc>(), {B, H, Tq});
    const Scalar *qp = q.data<Scalar>(), *kp = k.data<Scalar>(), *vp = v.data<Scalar>();
    Scalar* op = out.data<Scalar>();
    std::vector<Acc> p(Tk), o(D);  // one query row's scores/probabilities and output
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < H; ++h) {
        const int64_t kvh = h / (H / KV);
        for (int64_t i = 0; i < Tq; ++i) {
          const int64_t keys = dims.visible_keys(i, causal);
          Acc max = -std::numeric_limits<Acc>::infinity();
          for (int64_t j = 0; j < keys; ++j) {
            p[j] = Acc(scale) * dot(qp + dims.query_row(b, i, h), kp + dims.key_row(b, j, kvh), D);
            max = std::max(max, p[j]);
          }
          Acc sum = 0;
          for (int64_t j = 0; j < keys; ++j) {
            p[j] = std::exp(p[j] - max);
            sum += p[j];
          }
          std::fill(o.begin(), o.end(), Acc(0));
          for (int64_t j = 0; j < keys; ++j) {
            const Scalar* vj = vp + dims.key_row(b, j, kvh);
            for (int64_t d = 0; d < D; ++d) o[d] += p[j] * Acc(vj[d]);
          }
          for (int64_t d = 0; d < D; ++d) op[dims.query_row(b, i, h) + d] = Scalar(o[d] / sum);
          lse.data<Acc>()[(b * H + h) * Tq + i] = max + std::log(sum);
        }
      }
    }
  });
}

void CpuBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const Tensor& out, const Tensor& lse, const Tensor& dL_dout,
                                    bool causal, double scale, const Tensor& dL_dq,
                                    const Tensor& dL_dk, const Tensor& dL_dv) {
  const AttentionDims dims = attention_dims("attention_backward", q, k);
  const auto [B, Tq, Tk, H, KV, D] = dims;
  dispatch_float(q.dtype(), "attention_backward", [&](auto tag) {
    using Scalar = decltype(tag);
    using Acc = acc_type<Scalar>;
    check_arg("attention_backward", "q", q, q.dtype(), {B, Tq, H, D});
    check_arg("attention_backward", "k", k, q.dtype(), {B, Tk, KV, D});
    check_arg("attention_backward", "v", v, q.dtype(), {B, Tk, KV, D});
    check_arg("attention_backward", "out", out, q.dtype(), {B, Tq, H, D});
    check_arg("attention_backward", "lse", lse, dtype_of<Acc>(), {B, H, Tq});
    check_arg("attention_backward", "dL_dout", dL_dout, q.dtype(), {B, Tq, H, D});
    check_arg("attention_backward", "dL_dq", dL_dq, q.dtype(), {B, Tq, H, D});
    check_arg("attention_backward", "dL_dk", dL_dk, q.dtype(), {B, Tk, KV, D});
    check_arg("attention_backward", "dL_dv", dL_dv, q.dtype(), {B, Tk, KV, D});
    const Scalar *qp = q.data<Scalar>(), *kp = k.data<Scalar>(), *vp = v.data<Scalar>();
    const Scalar *op = out.data<Scalar>(), *dop = dL_dout.data<Scalar>();
    std::vector<Acc> dk(k.numel(), Acc(0)), dv(v.numel(), Acc(0));  // summed over query heads
    std::vector<Acc> dq(D);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t h = 0; h < H; ++h) {
        const int64_t kvh = h / (H / KV);
        for (int64_t i = 0; i < Tq; ++i) {
          const int64_t keys = dims.visible_keys(i, causal);
          const int64_t qi = dims.query_row(b, i, h);
          const Acc lse_i = lse.data<Acc>()[(b * H + h) * Tq + i];
          const Acc delta_i = dot(dop + qi, op + qi, D);
          std::fill(dq.begin(), dq.end(), Acc(0));
          for (int64_t j = 0; j < keys; ++j) {
            const int64_t kj = dims.key_row(b, j, kvh);
            const Acc p_ij = std::exp(Acc(scale) * dot(qp + qi, kp + kj, D) - lse_i);
            const Acc ds_ij = p_ij * (dot(dop + qi, vp + kj, D) - delta_i);
            for (int64_t d = 0; d < D; ++d) {
              dq[d] += Acc(scale) * ds_ij * Acc(kp[kj + d]);
              dk[kj + d] += Acc(scale) * ds_ij * Acc(qp[qi + d]);
              dv[kj + d] += p_ij * Acc(dop[qi + d]);
            }
          }
          for (int64_t d = 0; d < D; ++d) dL_dq.data<Scalar>()[qi + d] = Scalar(dq[d]);
        }
      }
    }
    for (int64_t e = 0; e < k.numel(); ++e) {
      dL_dk.data<Scalar>()[e] = Scalar(dk[e]);
      dL_dv.data<Scalar>()[e] = Scalar(dv[e]);
    }
  });
}

}  // namespace tessera
