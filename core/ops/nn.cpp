#include "core/ops/nn.h"

#include <cmath>
#include <numbers>

#include "core/autograd/engine.h"
#include "core/autograd/node.h"
#include "core/backend.h"
#include "core/ops/checks.h"
#include "core/ops/elementwise.h"
#include "core/ops/reduce.h"

namespace tessera {

namespace {

using Grads = std::vector<Tensor>;
using Needs = std::vector<bool>;

// Statistics (mean, rstd, lse, per-token losses) are f32, or f64 for f64 inputs (gradchecks).
DType stats_dtype(DType dtype) { return dtype == DType::F64 ? DType::F64 : DType::F32; }

Tensor as_rows(const Tensor& x) {
  int64_t rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  return x.detach().contiguous().view({rows, x.size(-1)});
}

void check_norm_args(std::string_view op, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_defined(op, x, "input");
  check_defined(op, weight, "weight");
  check_floating(op, x);
  check_same_dtype_device(op, x, weight);
  TS_CHECK(x.dim() >= 1 && weight.dim() == 1 && weight.size(0) == x.size(-1), op, ": weight ",
           weight.shape(), " must be [C] for input ", x.shape());
  if (bias.defined()) {
    check_same_dtype_device(op, x, bias);
    TS_CHECK(bias.shape() == weight.shape(), op, ": bias ", bias.shape(), " must match weight ", weight.shape());
  }
}

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  check_defined("embedding", weight, "weight");
  check_defined("embedding", ids, "ids");
  check_dim("embedding", weight, 2, "weight [V, C]");
  check_floating("embedding", weight);
  TS_CHECK(ids.dtype() == DType::I32 || ids.dtype() == DType::I64, "embedding: ids must be i32 or i64, got ",
           ids.dtype(), " ", ids.shape());
  TS_CHECK(ids.device() == weight.device(), "embedding: ids on ", ids.device(), " but weight on ", weight.device());
  int64_t n = ids.numel(), c = weight.size(1);
  Tensor flat_ids = ids.contiguous().view({n});
  Tensor out = Tensor::empty({n, c}, weight.dtype(), weight.device());
  backend_for(weight.device()).embedding(weight.detach().contiguous(), flat_ids, out);
  Shape out_shape = ids.shape();
  out_shape.push_back(c);
  out = out.view(out_shape);
  return record_op("embedding", {weight}, out, [flat_ids, w_shape = weight.shape(), n, c](const Grads& g, const Needs&) {
    Tensor dL_dweight = Tensor::zeros(w_shape, g[0].dtype(), g[0].device());
    backend_for(g[0].device()).embedding_backward_accumulate(flat_ids, g[0].contiguous().view({n, c}), dL_dweight,
                                                                    /*deterministic=*/true);
    return Grads{dL_dweight};
  });
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  check_norm_args("layer_norm", x, weight, bias);
  Tensor x2 = as_rows(x);
  int64_t rows = x2.size(0);
  Tensor y = Tensor::empty(x2.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({rows}, stats_dtype(x.dtype()), x.device());
  Tensor rstd = Tensor::empty({rows}, stats_dtype(x.dtype()), x.device());
  Tensor w = weight.detach().contiguous();
  Tensor b = bias.defined() ? bias.detach().contiguous() : Tensor();
  backend_for(x.device()).layer_norm(x2, Tensor(), w, b, eps, y, Tensor(), mean, rstd);
  y = y.view(x.shape());
  return record_op("layer_norm", {x, weight, bias}, y, [x2, w, mean, rstd, has_bias = bias.defined(),
                                                        x_shape = x.shape()](const Grads& g, const Needs&) {
    Tensor dL_dx = Tensor::empty(x2.shape(), x2.dtype(), x2.device());
    Tensor dL_dw = Tensor::empty(w.shape(), w.dtype(), w.device());
    Tensor dL_db = has_bias ? Tensor::empty(w.shape(), w.dtype(), w.device()) : Tensor();
    backend_for(x2.device()).layer_norm_backward(x2, w, mean, rstd, g[0].contiguous().view(x2.shape()), Tensor(),
                                                 dL_dx, dL_dw, dL_db);
    return Grads{dL_dx.view(x_shape), dL_dw, dL_db};
  });
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  check_norm_args("rms_norm", x, weight, Tensor());
  Tensor x2 = as_rows(x);
  Tensor y = Tensor::empty(x2.shape(), x.dtype(), x.device());
  Tensor rstd = Tensor::empty({x2.size(0)}, stats_dtype(x.dtype()), x.device());
  Tensor w = weight.detach().contiguous();
  backend_for(x.device()).rms_norm(x2, Tensor(), w, eps, y, Tensor(), rstd);
  y = y.view(x.shape());
  return record_op("rms_norm", {x, weight}, y, [x2, w, rstd, x_shape = x.shape()](const Grads& g, const Needs&) {
    Tensor dL_dx = Tensor::empty(x2.shape(), x2.dtype(), x2.device());
    Tensor dL_dw = Tensor::empty(w.shape(), w.dtype(), w.device());
    backend_for(x2.device()).rms_norm_backward(x2, w, rstd, g[0].contiguous().view(x2.shape()), Tensor(), dL_dx,
                                               dL_dw);
    return Grads{dL_dx.view(x_shape), dL_dw};
  });
}

std::pair<Tensor, Tensor> add_layer_norm(const Tensor& x, const Tensor& residual, const Tensor& weight,
                                         const Tensor& bias, double eps) {
  check_norm_args("add_layer_norm", x, weight, bias);
  check_defined("add_layer_norm", residual, "residual");
  check_same_dtype_device("add_layer_norm", x, residual);
  TS_CHECK(x.shape() == residual.shape(), "add_layer_norm: input ", x.shape(), " and residual ", residual.shape(),
           " must have the same shape");
  Tensor x2 = as_rows(x);
  int64_t rows = x2.size(0);
  Tensor y = Tensor::empty(x2.shape(), x.dtype(), x.device());
  Tensor h = Tensor::empty(x2.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({rows}, stats_dtype(x.dtype()), x.device());
  Tensor rstd = Tensor::empty({rows}, stats_dtype(x.dtype()), x.device());
  Tensor w = weight.detach().contiguous();
  Tensor b = bias.defined() ? bias.detach().contiguous() : Tensor();
  backend_for(x.device()).layer_norm(x2, as_rows(residual), w, b, eps, y, h, mean, rstd);
  std::vector<Tensor> outputs{y.view(x.shape()), h.view(x.shape())};
  Tensor h_saved = h;  // the untracked buffer; the tracked output is its view
  record_op("add_layer_norm", {x, residual, weight, bias}, outputs,
            [h_saved, w, mean, rstd, has_bias = bias.defined(), x_shape = x.shape()](const Grads& g, const Needs&) {
              Tensor dL_dh = Tensor::empty(h_saved.shape(), h_saved.dtype(), h_saved.device());
              Tensor dL_dw = Tensor::empty(w.shape(), w.dtype(), w.device());
              Tensor dL_db = has_bias ? Tensor::empty(w.shape(), w.dtype(), w.device()) : Tensor();
              backend_for(h_saved.device())
                  .layer_norm_backward(h_saved, w, mean, rstd, g[0].contiguous().view(h_saved.shape()),
                                       g[1].contiguous().view(h_saved.shape()), dL_dh, dL_dw, dL_db);
              Tensor grad = dL_dh.view(x_shape);
              return Grads{grad, grad, dL_dw, dL_db};
            });
  return {outputs[0], outputs[1]};
}

std::pair<Tensor, Tensor> add_rms_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, double eps) {
  check_norm_args("add_rms_norm", x, weight, Tensor());
  check_defined("add_rms_norm", residual, "residual");
  check_same_dtype_device("add_rms_norm", x, residual);
  TS_CHECK(x.shape() == residual.shape(), "add_rms_norm: input ", x.shape(), " and residual ", residual.shape(),
           " must have the same shape");
  Tensor x2 = as_rows(x);
  Tensor y = Tensor::empty(x2.shape(), x.dtype(), x.device());
  Tensor h = Tensor::empty(x2.shape(), x.dtype(), x.device());
  Tensor rstd = Tensor::empty({x2.size(0)}, stats_dtype(x.dtype()), x.device());
  Tensor w = weight.detach().contiguous();
  backend_for(x.device()).rms_norm(x2, as_rows(residual), w, eps, y, h, rstd);
  std::vector<Tensor> outputs{y.view(x.shape()), h.view(x.shape())};
  Tensor h_saved = h;
  record_op("add_rms_norm", {x, residual, weight}, outputs,
            [h_saved, w, rstd, x_shape = x.shape()](const Grads& g, const Needs&) {
              Tensor dL_dh = Tensor::empty(h_saved.shape(), h_saved.dtype(), h_saved.device());
              Tensor dL_dw = Tensor::empty(w.shape(), w.dtype(), w.device());
              backend_for(h_saved.device())
                  .rms_norm_backward(h_saved, w, rstd, g[0].contiguous().view(h_saved.shape()),
                                     g[1].contiguous().view(h_saved.shape()), dL_dh, dL_dw);
              Tensor grad = dL_dh.view(x_shape);
              return Grads{grad, grad, dL_dw};
            });
  return {outputs[0], outputs[1]};
}

Tensor softmax(const Tensor& x) {
  check_defined("softmax", x, "input");
  check_floating("softmax", x);
  TS_CHECK(x.dim() >= 1, "softmax: input must be at least 1-D");
  Tensor x2 = as_rows(x);
  Tensor y = Tensor::empty(x2.shape(), x.dtype(), x.device());
  backend_for(x.device()).softmax(x2, y);
  Tensor y_saved = y.detach();  // a separate handle: capturing the output would make a cycle
  return record_op("softmax", {x}, y.view(x.shape()), [y_saved, x_shape = x.shape()](const Grads& g, const Needs&) {
    Tensor dL_dx = Tensor::empty(y_saved.shape(), y_saved.dtype(), y_saved.device());
    backend_for(y_saved.device()).softmax_backward(y_saved, g[0].contiguous().view(y_saved.shape()), dL_dx);
    return Grads{dL_dx.view(x_shape)};
  });
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const CrossEntropyOptions& options) {
  check_defined("cross_entropy", logits, "logits");
  check_defined("cross_entropy", targets, "targets");
  check_floating("cross_entropy", logits);
  TS_CHECK(targets.dtype() == DType::I32 || targets.dtype() == DType::I64,
           "cross_entropy: targets must be i32 or i64, got ", targets.dtype());
  Shape expected_targets(logits.shape().begin(), logits.shape().end() - 1);
  TS_CHECK(targets.shape() == expected_targets, "cross_entropy: targets ", targets.shape(),
           " must have the logits' shape without the vocab dim: ", expected_targets, " (logits ", logits.shape(), ")");
  if (options.loss_mask.defined()) {
    TS_CHECK(options.loss_mask.shape() == targets.shape(), "cross_entropy: loss_mask ", options.loss_mask.shape(),
             " must match targets ", targets.shape());
  }
  Tensor logits2 = as_rows(logits);
  int64_t n = logits2.size(0);
  Tensor flat_targets = targets.contiguous().view({n});
  DType loss_dtype = stats_dtype(logits.dtype());
  Tensor losses = Tensor::empty({n}, loss_dtype, logits.device());
  int64_t ignore = options.ignore_index;
  backend_for(logits.device()).cross_entropy(logits2, flat_targets, ignore, losses);
  losses = record_op("cross_entropy", {logits}, losses, [logits2, flat_targets, ignore, shape = logits.shape()](
                                                            const Grads& g, const Needs&) {
    // The logits are usually held by this function alone (the output layer keeps its input,
    // not its output): the gradient then overwrites them, saving a logits-sized buffer.
    const bool overwrite = logits2.is_contiguous() && logits2.storage().use_count() == 1 &&
                           !backward_keeps_saved_tensors();
    Tensor dL_dlogits = overwrite ? logits2 : Tensor::empty(logits2.shape(), logits2.dtype(), logits2.device());
    backend_for(logits2.device()).cross_entropy_backward(logits2, flat_targets, ignore, g[0].contiguous(), dL_dlogits);
    return Grads{dL_dlogits.view(shape)};
  });

  // Ignored targets already have loss 0 (and gradient 0); the mask weighs the rest. Sum and
  // None stay on the device; Mean needs the count of tokens that count, which the host reads.
  Tensor mask = options.loss_mask.defined() ? options.loss_mask.contiguous().view({n}).to(loss_dtype) : Tensor();
  if (options.reduction != LossReduction::Mean) {
    Tensor weighted = mask.defined() ? mul(losses, mask) : losses;
    return options.reduction == LossReduction::Sum ? sum(weighted) : weighted.view(targets.shape());
  }
  std::vector<int64_t> host_targets = flat_targets.to_vector<int64_t>();
  std::vector<double> host_mask = mask.defined() ? mask.to_vector<double>() : std::vector<double>(size_t(n), 1.0);
  double counted = 0.0;
  for (size_t i = 0; i < host_mask.size(); ++i)
    if (host_targets[i] != ignore) counted += host_mask[i];
  Tensor weighted = mask.defined() ? mul(losses, mask) : losses;
  // No token counts (a fully masked batch): the loss is 0 and so are its gradients.
  return scale(sum(weighted), counted > 0.0 ? 1.0 / counted : 0.0);
}

Tensor dropout(const Tensor& x, double p, Generator& generator, bool training) {
  check_defined("dropout", x, "input");
  check_floating("dropout", x);
  TS_CHECK(p >= 0.0 && p < 1.0, "dropout: probability ", p, " must be in [0, 1)");
  if (!training || p == 0.0) return x;
  PhiloxState state = generator.next();
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).dropout(x.detach().contiguous(), p, state, out);
  return record_op("dropout", {x}, out, [p, state](const Grads& g, const Needs&) {
    Tensor dL_dx = Tensor::empty(g[0].shape(), g[0].dtype(), g[0].device());
    backend_for(g[0].device()).dropout(g[0].contiguous(), p, state, dL_dx);
    return Grads{dL_dx};
  });
}

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale) {
  constexpr std::string_view op = "scaled_dot_product_attention";
  check_defined(op, q, "q");
  check_defined(op, k, "k");
  check_defined(op, v, "v");
  check_floating(op, q);
  check_same_dtype_device(op, q, k);
  check_same_dtype_device(op, q, v);
  check_dim(op, q, 4, "q [B, Tq, H, D]");
  check_dim(op, k, 4, "k [B, Tk, KV, D]");
  TS_CHECK(k.shape() == v.shape(), op, ": k ", k.shape(), " and v ", v.shape(), " must have the same shape");
  TS_CHECK(q.size(0) == k.size(0) && q.size(3) == k.size(3), op, ": q ", q.shape(), " and k ", k.shape(),
           " must agree on B and D");
  TS_CHECK(q.size(1) <= k.size(1), op, ": q ", q.shape(), " has more positions than k ", k.shape(),
           "; the queries are the last Tq of the Tk key positions (Tq <= Tk)");
  TS_CHECK(k.size(2) > 0 && q.size(2) % k.size(2) == 0, op, ": query heads H=", q.size(2),
           " must be a multiple of key/value heads KV=", k.size(2));
  if (scale <= 0.0) scale = 1.0 / std::sqrt(static_cast<double>(q.size(3)));
  int64_t b = q.size(0), t = q.size(1), h = q.size(2);
  // Slices of a packed QKV projection go to the backend as they are where it reads strides.
  const bool strided = backend_for(q.device()).attention_takes_strided_qkv();
  auto input = [strided](const Tensor& x) { return strided && x.strides()[3] == 1 ? x.detach() : x.detach().contiguous(); };
  Tensor qc = input(q), kc = input(k), vc = input(v);
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  Tensor lse = Tensor::empty({b, h, t}, stats_dtype(q.dtype()), q.device());
  backend_for(q.device()).attention(qc, kc, vc, causal, scale, out, lse);
  Tensor out_saved = out.detach();  // a separate handle: capturing `out` itself would make a cycle
  return record_op("attention", {q, k, v}, out, [qc, kc, vc, out_saved, lse, causal, scale](const Grads& g, const Needs&) {
    Tensor dL_dq = Tensor::empty(qc.shape(), qc.dtype(), qc.device());
    Tensor dL_dk = Tensor::empty(kc.shape(), kc.dtype(), kc.device());
    Tensor dL_dv = Tensor::empty(vc.shape(), vc.dtype(), vc.device());
    backend_for(qc.device()).attention_backward(qc, kc, vc, out_saved, lse, g[0].contiguous(), causal, scale,
                                                dL_dq, dL_dk, dL_dv);
    return Grads{dL_dq, dL_dk, dL_dv};
  });
}

Tensor packed_qkv_attention(const Tensor& qkv, bool causal, double scale) {
  constexpr std::string_view op = "packed_qkv_attention";
  check_defined(op, qkv, "qkv");
  check_dim(op, qkv, 5, "qkv [B, T, H, 3, D]");
  TS_CHECK(qkv.size(3) == 3, op, ": qkv ", qkv.shape(), " must hold 3 slices (query, key, value) in dim 3");
  auto slice = [](const Tensor& packed, int64_t i) { return packed.narrow(3, i, 1).squeeze(3); };
  if (!backend_for(qkv.device()).attention_takes_strided_qkv() || !qkv.is_contiguous()) {
    return scaled_dot_product_attention(slice(qkv, 0), slice(qkv, 1), slice(qkv, 2), causal, scale);
  }
  if (scale <= 0.0) scale = 1.0 / std::sqrt(static_cast<double>(qkv.size(4)));
  Tensor packed = qkv.detach();
  Tensor q = slice(packed, 0), k = slice(packed, 1), v = slice(packed, 2);
  const int64_t b = q.size(0), t = q.size(1), h = q.size(2);
  Tensor out = Tensor::empty(q.shape(), q.dtype(), q.device());
  Tensor lse = Tensor::empty({b, h, t}, stats_dtype(q.dtype()), q.device());
  backend_for(q.device()).attention(q, k, v, causal, scale, out, lse);
  Tensor out_saved = out.detach();  // a separate handle: capturing `out` itself would make a cycle
  return record_op("packed_qkv_attention", {qkv}, out,
                   [packed, out_saved, lse, causal, scale, slice](const Grads& g, const Needs&) {
                     // The three gradients fill the packed gradient exactly: no zeroing, no copies.
                     Tensor dL_dqkv = Tensor::empty(packed.shape(), packed.dtype(), packed.device());
                     backend_for(packed.device())
                         .attention_backward(slice(packed, 0), slice(packed, 1), slice(packed, 2), out_saved, lse,
                                             g[0].contiguous(), causal, scale, slice(dL_dqkv, 0), slice(dL_dqkv, 1),
                                             slice(dL_dqkv, 2));
                     return Grads{dL_dqkv};
                   });
}

std::pair<Tensor, Tensor> rope_tables(int64_t seq_len, int64_t head_dim, double theta, const RopeScaling& scaling,
                                      DType dtype, Device device) {
  TS_CHECK(head_dim > 0 && head_dim % 2 == 0, "rope_tables: head_dim ", head_dim, " must be positive and even");
  TS_CHECK(theta > 0.0, "rope_tables: theta ", theta, " must be positive");
  int64_t half = head_dim / 2;
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    double freq = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    if (scaling.factor > 0.0) {
      // Llama 3.1: keep high frequencies, divide low ones by `factor`, blend in between.
      double old_len = static_cast<double>(scaling.original_max_position);
      double wavelen = 2.0 * std::numbers::pi / freq;
      double high_wavelen = old_len / scaling.high_freq_factor;
      double low_wavelen = old_len / scaling.low_freq_factor;
      if (wavelen > low_wavelen) {
        freq /= scaling.factor;
      } else if (wavelen >= high_wavelen) {
        double smooth = (old_len / wavelen - scaling.low_freq_factor) /
                        (scaling.high_freq_factor - scaling.low_freq_factor);
        freq = (1.0 - smooth) * freq / scaling.factor + smooth * freq;
      }
    }
    inv_freq[static_cast<size_t>(i)] = freq;
  }
  std::vector<double> cos_values(static_cast<size_t>(seq_len * half)), sin_values(cos_values.size());
  for (int64_t pos = 0; pos < seq_len; ++pos) {
    for (int64_t i = 0; i < half; ++i) {
      double angle = static_cast<double>(pos) * inv_freq[static_cast<size_t>(i)];
      cos_values[static_cast<size_t>(pos * half + i)] = std::cos(angle);
      sin_values[static_cast<size_t>(pos * half + i)] = std::sin(angle);
    }
  }
  DType table_dtype = stats_dtype(dtype);
  return {Tensor::from_vector(cos_values, {seq_len, half}).to(table_dtype).to(device),
          Tensor::from_vector(sin_values, {seq_len, half}).to(table_dtype).to(device)};
}

Tensor rope(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  check_defined("rope", x, "input");
  check_floating("rope", x);
  check_dim("rope", x, 4, "input [B, T, H, D]");
  Shape table_shape{x.size(1), x.size(3) / 2};
  TS_CHECK(x.size(3) % 2 == 0, "rope: head dim D=", x.size(3), " must be even");
  TS_CHECK(cos.shape() == table_shape && sin.shape() == table_shape, "rope: cos ", cos.shape(), " and sin ",
           sin.shape(), " must be [T, D/2] = ", table_shape, " for input ", x.shape());
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).rope(x.detach().contiguous(), cos, sin, false, out);
  return record_op("rope", {x}, out, [cos, sin](const Grads& g, const Needs&) {
    Tensor dL_dx = Tensor::empty(g[0].shape(), g[0].dtype(), g[0].device());
    backend_for(g[0].device()).rope(g[0].contiguous(), cos, sin, true, dL_dx);
    return Grads{dL_dx};
  });
}

}  // namespace tessera
