#include "core/ops/checks.h"

namespace tessera {

void check_defined(std::string_view op, const Tensor& t, std::string_view what) {
  TS_CHECK(t.defined(), op, ": ", what, " is an undefined tensor");
}

void check_same_dtype_device(std::string_view op, const Tensor& a, const Tensor& b) {
  TS_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch: ", a.dtype(), " ", a.shape(), " vs ",
           b.dtype(), " ", b.shape());
  TS_CHECK(a.device() == b.device(), op, ": device mismatch: ", a.shape(), " on ", a.device(), " vs ",
           b.shape(), " on ", b.device());
}

void check_floating(std::string_view op, const Tensor& t) {
  TS_CHECK(is_floating(t.dtype()), op, ": expected a floating tensor, got ", t.dtype(), " ", t.shape());
}

void check_dim(std::string_view op, const Tensor& t, int64_t ndim, std::string_view what) {
  TS_CHECK(t.dim() == ndim, op, ": ", what, " must be ", ndim, "-D, got shape ", t.shape());
}

}  // namespace tessera
