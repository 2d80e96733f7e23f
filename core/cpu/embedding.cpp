// CPU reference for the embedding lookup: out[N, C] = weight[ids[N], :] with weight [V, C] and
// ids (i32/i64, any shape, N elements), and its backward, which adds row n of dL_dout into row
// ids[n] of dL_dweight in order n = 0, 1, ... (deterministic by construction). Every id is
// checked to lie in [0, V).
#include <algorithm>
#include <string_view>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/cpu/strided.h"
#include "core/kernel_args.h"

namespace tessera {

namespace {

// ids as int64 after checking each lies in [0, V).
std::vector<int64_t> checked_ids(std::string_view op, const Tensor& ids, int64_t vocab) {
  std::vector<int64_t> out(static_cast<size_t>(ids.numel()));
  dispatch_index(ids.dtype(), op, [&](auto t) {
    using I = decltype(t);
    const I* p = ids.data<I>();
    for (size_t n = 0; n < out.size(); ++n) {
      int64_t id = static_cast<int64_t>(p[n]);
      TS_CHECK(id >= 0 && id < vocab, op, ": id ", id, " at position ", n, " is outside [0, V = ", vocab, ")");
      out[n] = id;
    }
  });
  return out;
}

}  // namespace

void CpuBackend::embedding(const Tensor& weight, const Tensor& ids, const Tensor& out) {
  check_embedding_shapes("embedding", weight, ids, out, "out");
  std::vector<int64_t> rows = checked_ids("embedding", ids, weight.size(0));
  int64_t channels = weight.size(1);
  dispatch_float(weight.dtype(), "embedding", [&](auto t) {
    using T = decltype(t);
    const T* w = weight.data<T>();
    T* y = out.data<T>();
    for (size_t n = 0; n < rows.size(); ++n) {
      const T* src = w + rows[n] * channels;
      std::copy(src, src + channels, y + static_cast<int64_t>(n) * channels);
    }
  });
}

// Rows are added in order of the ids, so the CPU kernel is deterministic whatever the flag.
void CpuBackend::embedding_backward_accumulate(const Tensor& ids, const Tensor& dL_dout, const Tensor& dL_dweight,
                                               bool /*deterministic*/) {
  check_embedding_shapes("embedding_backward_accumulate", dL_dweight, ids, dL_dout, "dL_dout");
  std::vector<int64_t> rows = checked_ids("embedding_backward_accumulate", ids, dL_dweight.size(0));
  int64_t channels = dL_dweight.size(1);
  dispatch_float(dL_dweight.dtype(), "embedding_backward_accumulate", [&](auto t) {
    using T = decltype(t);
    using A = acc_type<T>;
    const T* dy = dL_dout.data<T>();
    T* dw = dL_dweight.data<T>();
    for (size_t n = 0; n < rows.size(); ++n) {
      const T* src = dy + static_cast<int64_t>(n) * channels;
      T* dst = dw + rows[n] * channels;
      for (int64_t c = 0; c < channels; ++c) dst[c] = T(static_cast<A>(dst[c]) + static_cast<A>(src[c]));
    }
  });
}

}  // namespace tessera
