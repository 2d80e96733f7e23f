#include "core/gemm_shape.h"

namespace tessera {

namespace {

struct Matrices {
  int64_t batch, rows, cols;
};

Matrices matrices(const Tensor& t) {
  if (t.dim() == 2) return {1, t.size(0), t.size(1)};
  return {t.size(0), t.size(1), t.size(2)};
}

}  // namespace

std::string gemm_shapes(const Tensor& a, const Tensor& b, const Tensor& c, const GemmArgs& args) {
  return "a " + shape_str(a.shape()) + (args.trans_a ? " (transposed)" : "") + ", b " + shape_str(b.shape()) +
         (args.trans_b ? " (transposed)" : "") + ", c " + shape_str(c.shape());
}

GemmSize check_gemm_operands(const Tensor& a, const Tensor& b, const Tensor& c, const GemmArgs& args) {
  for (const Tensor* t : {&a, &b, &c}) {
    TS_CHECK(t->dim() == 2 || t->dim() == 3, "gemm: operands must be [batch, rows, cols] or [rows, cols]: ",
             gemm_shapes(a, b, c, args));
    TS_CHECK(t->is_contiguous(), "gemm: operands must be contiguous: ", gemm_shapes(a, b, c, args));
  }
  TS_CHECK(a.dtype() == c.dtype() && b.dtype() == c.dtype(), "gemm: dtypes differ: a ", a.dtype(), ", b ", b.dtype(),
           ", c ", c.dtype());
  Matrices ma = matrices(a), mb = matrices(b), mc = matrices(c);
  GemmSize s{mc.batch, ma.batch, mb.batch, mc.rows, mc.cols, args.trans_a ? ma.rows : ma.cols};
  TS_CHECK((args.trans_a ? ma.cols : ma.rows) == s.m && (args.trans_b ? mb.cols : mb.rows) == s.k &&
               (args.trans_b ? mb.rows : mb.cols) == s.n,
           "gemm: inner dimensions do not match: ", gemm_shapes(a, b, c, args));
  TS_CHECK((s.batch_a == 1 || s.batch_a == s.batch) && (s.batch_b == 1 || s.batch_b == s.batch),
           "gemm: batch counts of a and b must be 1 or c's: ", gemm_shapes(a, b, c, args));
  return s;
}

}  // namespace tessera
