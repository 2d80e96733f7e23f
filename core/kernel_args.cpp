#include "core/kernel_args.h"

#include <cmath>

namespace tessera {

namespace {

void check_contiguous_arg(std::string_view op, std::string_view name, const Tensor& t) {
  TS_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous, got shape ", shape_str(t.shape()), " strides ",
           shape_str(t.strides()));
}

}  // namespace

void check_adamw_hyper(const AdamWHyper& h) {
  TS_CHECK(h.step >= 1, "adamw: step must be >= 1 (1-based), got ", h.step);
  TS_CHECK(h.beta1 >= 0.0 && h.beta1 < 1.0 && h.beta2 >= 0.0 && h.beta2 < 1.0,
           "adamw: betas must lie in [0, 1), got beta1 ", h.beta1, ", beta2 ", h.beta2);
  TS_CHECK(h.lr >= 0.0 && h.eps >= 0.0 && h.weight_decay >= 0.0, "adamw: lr ", h.lr, ", eps ", h.eps,
           " and weight_decay ", h.weight_decay, " must be >= 0");
  TS_CHECK(h.grad_scale > 0.0 && std::isfinite(h.grad_scale), "adamw: grad_scale must be finite and > 0, got ",
           h.grad_scale);
}

void check_embedding_shapes(std::string_view op, const Tensor& weight, const Tensor& ids, const Tensor& rows,
                            std::string_view rows_name) {
  TS_CHECK(weight.dim() == 2, op, ": weight must be [V, C], got ", shape_str(weight.shape()));
  TS_CHECK(rows.numel() == ids.numel() * weight.size(1), op, ": ", rows_name, " ", shape_str(rows.shape()),
           " must hold one row of C = ", weight.size(1), " per id (ids ", shape_str(ids.shape()), ")");
  TS_CHECK(rows.dtype() == weight.dtype(), op, ": ", rows_name, " is ", rows.dtype(), " but weight is ",
           weight.dtype());
  check_contiguous_arg(op, "weight", weight);
  check_contiguous_arg(op, "ids", ids);
  check_contiguous_arg(op, rows_name, rows);
}

}  // namespace tessera
