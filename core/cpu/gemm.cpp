// CPU reference GEMM: c[batch, M, N] = alpha * op(a) op(b) + beta * c with row-major,
// contiguous operands (a 2-D operand is a batch of one; a batch of one broadcasts over c's
// batch). f32 and f64 call OpenBLAS sgemm / dgemm once per batch; bf16 and f16 are widened to
// f32 temporaries, multiplied with sgemm (f32 accumulation) and rounded back. With beta == 0,
// c is never read (garbage or NaN in it does not leak into the result).
#include <cblas.h>

#include <algorithm>
#include <climits>
#include <string>
#include <string_view>
#include <vector>

#include "core/cpu/activation_math.h"
#include "core/cpu/cpu_backend.h"
#include "core/cpu/strided.h"
#include "core/gemm_shape.h"

namespace tessera {

namespace {

GemmSize check_gemm(const Tensor& a, const Tensor& b, const Tensor& c, const GemmArgs& args) {
  GemmSize s = check_gemm_operands(a, b, c, args);
  TS_CHECK(std::max({s.m, s.n, s.k}) <= INT_MAX, "gemm: a dimension exceeds BLAS's int range: ",
           gemm_shapes(a, b, c, args));
  return s;
}

void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, double alpha, const float* a, int lda,
               const float* b, int ldb, double beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, static_cast<float>(alpha), a, lda, b, ldb, static_cast<float>(beta),
              c, ldc);
}

void blas_gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int m, int n, int k, double alpha, const double* a, int lda,
               const double* b, int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// One BLAS call per batch on raw row-major pointers (T is float or double).
template <typename T>
void gemm_batches(const T* a, const T* b, T* c, const GemmSize& s, const GemmArgs& args) {
  int m = static_cast<int>(s.m), n = static_cast<int>(s.n), k = static_cast<int>(s.k);
  int lda = std::max(1, args.trans_a ? m : k);
  int ldb = std::max(1, args.trans_b ? k : n);
  int ldc = std::max(1, n);
  CBLAS_TRANSPOSE ta = args.trans_a ? CblasTrans : CblasNoTrans;
  CBLAS_TRANSPOSE tb = args.trans_b ? CblasTrans : CblasNoTrans;
  for (int64_t i = 0; i < s.batch; ++i) {
    const T* ai = a + (s.batch_a == 1 ? 0 : i) * s.m * s.k;
    const T* bi = b + (s.batch_b == 1 ? 0 : i) * s.k * s.n;
    blas_gemm(ta, tb, m, n, k, args.alpha, ai, lda, bi, ldb, args.beta, c + i * s.m * s.n, ldc);
  }
}

template <typename T>
std::vector<float> widen(const Tensor& t) {
  const T* p = t.data<T>();
  return std::vector<float>(p, p + t.numel());
}

void check_epilogue(const Tensor& c, const GemmSize& s, const GemmArgs& args) {
  if (args.epilogue == GemmEpilogue::None) return;
  TS_CHECK(args.beta == 0.0, "gemm: an epilogue needs beta == 0, got beta ", args.beta);
  bool has_bias = args.epilogue == GemmEpilogue::Bias || args.epilogue == GemmEpilogue::BiasGelu;
  if (has_bias) {
    TS_CHECK(args.bias.defined() && args.bias.dtype() == c.dtype() && args.bias.is_contiguous() &&
                 args.bias.shape() == Shape{s.n},
             "gemm: the bias epilogue needs a contiguous bias [", s.n, "] of dtype ", c.dtype(), ", got ",
             args.bias.defined() ? shape_str(args.bias.shape()) : std::string("none"));
  }
  TS_CHECK(args.epilogue != GemmEpilogue::DGelu || args.pre_gelu.defined(),
           "gemm: the dgelu epilogue needs pre_gelu, the forward's pre-activation");
  if (args.pre_gelu.defined()) {
    TS_CHECK(args.pre_gelu.shape() == c.shape() && args.pre_gelu.dtype() == c.dtype() && args.pre_gelu.is_contiguous(),
             "gemm: pre_gelu must be contiguous with c's shape ", c.shape(), " and dtype ", c.dtype());
  }
}

// Applies the epilogue to the product (held in acc precision) and stores pre-activations.
template <typename T, typename A>
void apply_epilogue(A* c, const GemmSize& s, const GemmArgs& args) {
  if (args.epilogue == GemmEpilogue::None) return;
  bool has_bias = args.epilogue == GemmEpilogue::Bias || args.epilogue == GemmEpilogue::BiasGelu;
  bool has_gelu = args.epilogue == GemmEpilogue::Gelu || args.epilogue == GemmEpilogue::BiasGelu;
  const T* bias = has_bias ? args.bias.data<T>() : nullptr;
  T* pre = args.pre_gelu.defined() ? args.pre_gelu.data<T>() : nullptr;
  int64_t total = s.batch * s.m * s.n;
  if (args.epilogue == GemmEpilogue::DGelu) {
    for (int64_t i = 0; i < total; ++i) c[i] *= gelu_tanh_slope(A(pre[i]));
    return;
  }
  for (int64_t i = 0; i < total; ++i) {
    A v = c[i] + (bias ? A(bias[i % s.n]) : A(0));
    if (has_gelu) {
      if (pre) pre[i] = T(v);
      v = gelu_tanh(v);
    }
    c[i] = v;
  }
}

}  // namespace

void CpuBackend::gemm(const Tensor& a, const Tensor& b, const Tensor& c, const GemmArgs& args) {
  GemmSize s = check_gemm(a, b, c, args);
  check_epilogue(c, s, args);
  if (s.m == 0 || s.n == 0 || s.batch == 0) return;
  dispatch_float(c.dtype(), "gemm", [&](auto t) {
    using T = decltype(t);
    if constexpr (is_16bit_float_v<T>) {
      std::vector<float> a32 = widen<T>(a), b32 = widen<T>(b);
      std::vector<float> c32 = args.beta == 0.0 ? std::vector<float>(static_cast<size_t>(c.numel())) : widen<T>(c);
      gemm_batches(a32.data(), b32.data(), c32.data(), s, args);
      apply_epilogue<T>(c32.data(), s, args);
      std::copy(c32.begin(), c32.end(), c.data<T>());
    } else {
      gemm_batches(a.data<T>(), b.data<T>(), c.data<T>(), s, args);
      apply_epilogue<T>(c.data<T>(), s, args);
    }
  });
}

}  // namespace tessera
