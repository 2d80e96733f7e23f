// CPU reference for the row reductions over the last dim of a contiguous x [R, C]: sum, max,
// min into out [R] (x's dtype) and argmax into i64. Sums accumulate in f64 whatever the dtype
// (a tighter reference than the f32 accumulation of the CUDA kernels); max and min propagate
// NaN; argmax returns the first maximum (a NaN counts as the maximum).
#include <algorithm>
#include <cmath>
#include <string_view>
#include <utility>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/strided.h"

namespace tessera {

namespace {

// Checks x [R, C] contiguous and out contiguous with R elements; returns {R, C}.
std::pair<int64_t, int64_t> check_rows(std::string_view op, const Tensor& x, const Tensor& out) {
  TS_CHECK(x.dim() == 2, op, ": x must be [R, C], got ", shape_str(x.shape()));
  int64_t rows = x.size(0);
  TS_CHECK(out.numel() == rows, op, ": out ", shape_str(out.shape()), " must hold one value per row of x ",
           shape_str(x.shape()));
  check_contiguous(op, "x", x);
  check_contiguous(op, "out", out);
  return {rows, x.size(1)};
}

// One step of a row reduction in f64; max and min keep the first NaN they meet.
double reduce_step(RowReduceOp op, double acc, double v) {
  if (op == RowReduceOp::Sum) return acc + v;
  if (std::isnan(acc)) return acc;
  if (std::isnan(v)) return v;
  return op == RowReduceOp::Max ? std::max(acc, v) : std::min(acc, v);
}

}  // namespace

void CpuBackend::reduce_rows(RowReduceOp op, const Tensor& x, const Tensor& out) {
  auto [rows, cols] = check_rows("reduce_rows", x, out);
  TS_CHECK(out.dtype() == x.dtype(), "reduce_rows: out is ", out.dtype(), " but x is ", x.dtype());
  TS_CHECK(op == RowReduceOp::Sum || cols > 0, "reduce_rows: max/min of an empty row (x ", shape_str(x.shape()), ")");
  dispatch_float(x.dtype(), "reduce_rows", [&](auto t) {
    using T = decltype(t);
    const T* in = x.data<T>();
    T* y = out.data<T>();
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = in + r * cols;
      double result = op == RowReduceOp::Sum ? 0.0 : static_cast<double>(row[0]);
      for (int64_t c = 0; c < cols; ++c) result = reduce_step(op, result, static_cast<double>(row[c]));
      y[r] = convert<T>(result);
    }
  });
}

void CpuBackend::argmax_rows(const Tensor& x, const Tensor& out_i64) {
  auto [rows, cols] = check_rows("argmax_rows", x, out_i64);
  TS_CHECK(out_i64.dtype() == DType::I64, "argmax_rows: out must be i64, got ", out_i64.dtype());
  TS_CHECK(cols > 0, "argmax_rows: empty rows (x ", shape_str(x.shape()), ")");
  dispatch_float(x.dtype(), "argmax_rows", [&](auto t) {
    using T = decltype(t);
    using A = acc_type<T>;
    const T* in = x.data<T>();
    int64_t* y = out_i64.data<int64_t>();
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = in + r * cols;
      int64_t best = 0;
      for (int64_t c = 1; c < cols; ++c) {
        A v = static_cast<A>(row[c]);
        A b = static_cast<A>(row[best]);
        if (!std::isnan(b) && (v > b || std::isnan(v))) best = c;
      }
      y[r] = best;
    }
  });
}

}  // namespace tessera
