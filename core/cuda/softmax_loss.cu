// CUDA softmax over the last dim of [R, C] and cross-entropy over logits [N, V] (contract in
// core/backend.h, reference math in core/cpu/softmax_loss.cpp and optimizer_kernels.cpp).
// One block per row. A row is read as [head scalars][16-byte vectors][tail scalars], the
// head bringing the vectors to a 16-byte boundary, so rows of any length (V = 50257) use
// vector loads; tensors read or written together must then share their alignment mod 16
// (otherwise every access is scalar). logsumexp is taken in one pass with an online
// max/sum per thread, combined across the block; outputs are written in a second pass.
//
// Targets outside [0, V) that are not ignore_index: the CPU throws, but checking them on the
// GPU would cost a host sync per call. Instead such a row gets a NaN loss and a NaN gradient
// row, so the bad batch shows up as a NaN loss at the trainer's next loss read (and in the
// found_inf check of loss scaling) rather than training on garbage silently.
#include <algorithm>
#include <type_traits>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/kernel_utils.cuh"

namespace tessera {
namespace {

using cuda::acc_t;
using cuda::block_reduce;
using cuda::load;
using cuda::MaxOp;
using cuda::PackedVec;
using cuda::store;
using cuda::SumOp;

template <typename A>
__device__ __forceinline__ A exp_of(A x) {
  if constexpr (std::is_same_v<A, double>) return ::exp(x);
  else return ::expf(x);
}

template <typename A>
__device__ __forceinline__ A log_of(A x) {
  if constexpr (std::is_same_v<A, double>) return ::log(x);
  else return ::logf(x);
}

// +inf and NaN of the accumulation type (std::numeric_limits is host-only without
// --expt-relaxed-constexpr).
template <typename A>
__device__ __forceinline__ A infinity() {
  if constexpr (std::is_same_v<A, double>) return __longlong_as_double(0x7ff0000000000000LL);
  else return __int_as_float(0x7f800000);
}

template <typename A>
__device__ __forceinline__ A quiet_nan() {
  if constexpr (std::is_same_v<A, double>) return __longlong_as_double(0x7ff8000000000000LL);
  else return __int_as_float(0x7fc00000);
}

template <int N>
using Width = std::integral_constant<int, N>;

// Calls fn(Width<n>{}, i) for pieces [i, i + n) that together cover the row [0, C) once, split
// across the block's threads: n = 1 for the head and tail, n = kVec for the body, whose pieces
// start 16-byte aligned for a row starting at `row`.
template <int kVec, typename T, typename Fn>
__device__ __forceinline__ void for_each_piece(const T* row, int64_t C, Fn&& fn) {
  int64_t head = 0;
  if constexpr (kVec > 1) {
    const auto misaligned = reinterpret_cast<uintptr_t>(row) % 16;
    head = misaligned == 0 ? 0 : int64_t((16 - misaligned) / sizeof(T));
    head = head < C ? head : C;
  }
  const int64_t nvec = (C - head) / kVec, tail = head + nvec * kVec;
  for (int64_t i = threadIdx.x; i < head; i += blockDim.x) fn(Width<1>{}, i);
  for (int64_t v = threadIdx.x; v < nvec; v += blockDim.x) fn(Width<kVec>{}, head + v * kVec);
  for (int64_t i = tail + threadIdx.x; i < C; i += blockDim.x) fn(Width<1>{}, i);
}

template <int N, typename T>
__device__ __forceinline__ PackedVec<T, N> load_piece(const T* p) {
  return *reinterpret_cast<const PackedVec<T, N>*>(p);
}

template <int N, typename T>
__device__ __forceinline__ void store_piece(T* p, const PackedVec<T, N>& v) {
  *reinterpret_cast<PackedVec<T, N>*>(p) = v;
}

// Running max and sum of exp(x - max) of one thread's elements, updated a piece at a time:
// one rescale per piece (not per element), and no divergent branch per element.
template <typename A>
struct OnlineLse {
  A max = -infinity<A>();
  A sum = 0;

  template <int N>
  __device__ void add(const A (&x)[N]) {
    A piece_max = x[0];
#pragma unroll
    for (int j = 1; j < N; ++j) piece_max = ::fmax(piece_max, x[j]);  // NaN-ignoring
    if (piece_max > max) {
      sum = sum * exp_of(max - piece_max);  // 0 while max is -inf
      max = piece_max;
    }
    // Skipped only while everything so far is -inf (adds 0, and exp(-inf + inf) would be NaN);
    // an all-NaN piece still goes in, so NaN propagates.
    if (max != -infinity<A>() || piece_max != piece_max) {
#pragma unroll
      for (int j = 0; j < N; ++j) sum += exp_of(x[j] - max);
    }
  }
};

// logsumexp of the row over the whole block (every thread gets it).
template <int kVec, typename T>
__device__ acc_t<T> row_logsumexp(const T* row, int64_t C) {
  using A = acc_t<T>;
  OnlineLse<A> s;
  for_each_piece<kVec>(row, C, [&](auto width, int64_t i) {
    constexpr int N = decltype(width)::value;
    const auto xv = load_piece<N>(row + i);
    A x[N];
#pragma unroll
    for (int j = 0; j < N; ++j) x[j] = load(xv.v[j]);
    s.add(x);
  });
  const A max = block_reduce(s.max, MaxOp{}, -infinity<A>());
  const A mine = s.max == -infinity<A>() ? A(0) : s.sum * exp_of(s.max - max);
  return max + log_of(block_reduce(mine, SumOp{}, A(0)));
}

template <typename T, int kVec>
__global__ void softmax_kernel(const T* x, T* y, int64_t C) {
  using A = acc_t<T>;
  const int64_t base = int64_t(blockIdx.x) * C;
  const A lse = row_logsumexp<kVec>(x + base, C);
  for_each_piece<kVec>(x + base, C, [&](auto width, int64_t i) {
    constexpr int N = decltype(width)::value;
    const auto xv = load_piece<N>(x + base + i);
    PackedVec<T, N> yv;
#pragma unroll
    for (int j = 0; j < N; ++j) yv.v[j] = store<T>(exp_of(load(xv.v[j]) - lse));
    store_piece<N>(y + base + i, yv);
  });
}

// dL_dx = y * (dL_dy - sum(dL_dy * y)).
template <typename T, int kVec>
__global__ void softmax_backward_kernel(const T* y, const T* dy, T* dx, int64_t C) {
  using A = acc_t<T>;
  const int64_t base = int64_t(blockIdx.x) * C;
  A local = 0;
  for_each_piece<kVec>(y + base, C, [&](auto width, int64_t i) {
    constexpr int N = decltype(width)::value;
    const auto yv = load_piece<N>(y + base + i), dyv = load_piece<N>(dy + base + i);
#pragma unroll
    for (int j = 0; j < N; ++j) local += load(dyv.v[j]) * load(yv.v[j]);
  });
  const A dot = block_reduce(local, SumOp{}, A(0));
  for_each_piece<kVec>(y + base, C, [&](auto width, int64_t i) {
    constexpr int N = decltype(width)::value;
    const auto yv = load_piece<N>(y + base + i), dyv = load_piece<N>(dy + base + i);
    PackedVec<T, N> dxv;
#pragma unroll
    for (int j = 0; j < N; ++j) dxv.v[j] = store<T>(load(yv.v[j]) * (load(dyv.v[j]) - dot));
    store_piece<N>(dx + base + i, dxv);
  });
}

template <typename T, typename Index>
struct CrossEntropyArgs {
  const T* logits;
  const Index* targets;
  int64_t ignore_index;
  const acc_t<T>* dL_dlosses;  // kGrad
  acc_t<T>* losses;            // kLoss
  T* dL_dlogits;               // kGrad; may be logits itself
  int64_t V;
};

// Fills a gradient row with one value (0 on ignored rows, NaN on bad targets).
template <int kVec, typename T>
__device__ void fill_row(T* row, int64_t C, T value) {
  for_each_piece<kVec>(row, C, [&](auto width, int64_t i) {
    constexpr int N = decltype(width)::value;
    PackedVec<T, N> v;
#pragma unroll
    for (int j = 0; j < N; ++j) v.v[j] = value;
    store_piece<N>(row + i, v);
  });
}

// kLoss: losses[n] = logsumexp - logit[target]; kGrad: dL_dlogits[n] = (softmax - onehot) *
// dL_dlosses[n]. Both: the fused forward + backward, reading the row of logits twice.
template <typename T, typename Index, int kVec, bool kLoss, bool kGrad>
__global__ void cross_entropy_kernel(CrossEntropyArgs<T, Index> a) {
  using A = acc_t<T>;
  const int64_t n = blockIdx.x, V = a.V, base = n * V;
  const T* row = a.logits + base;
  const int64_t target = static_cast<int64_t>(a.targets[n]);
  if (target == a.ignore_index || target < 0 || target >= V) {  // the whole block leaves together
    const bool ignored = target == a.ignore_index;
    const A value = ignored ? A(0) : quiet_nan<A>();
    if (kLoss && threadIdx.x == 0) a.losses[n] = value;
    if constexpr (kGrad) fill_row<kVec>(a.dL_dlogits + base, V, store<T>(value));
    return;
  }
  // Read before the block reduction inside row_logsumexp: in place, the row is overwritten after it.
  const A target_logit = kLoss && threadIdx.x == 0 ? load(row[target]) : A(0);
  const A lse = row_logsumexp<kVec>(row, V);
  if (kLoss && threadIdx.x == 0) a.losses[n] = lse - target_logit;
  if constexpr (kGrad) {
    const A dloss = a.dL_dlosses[n];
    T* grad = a.dL_dlogits + base;
    for_each_piece<kVec>(row, V, [&](auto width, int64_t i) {
      constexpr int N = decltype(width)::value;
      const auto xv = load_piece<N>(row + i);
      PackedVec<T, N> gv;
#pragma unroll
      for (int j = 0; j < N; ++j) {
        const A onehot = i + j == target ? A(1) : A(0);
        gv.v[j] = store<T>((exp_of(load(xv.v[j]) - lse) - onehot) * dloss);
      }
      store_piece<N>(grad + i, gv);
    });
  }
}

// ---- host side ----

void check_arg(const char* kernel, const char* name, const Tensor& t, DType dtype, const Shape& shape,
               int device) {
  cuda::check_on_device(kernel, name, t, device);
  TS_CHECK(t.dtype() == dtype && t.shape() == shape, kernel, ": expected ", name, " ", dtype_name(dtype), " ",
           shape_str(shape), ", got ", dtype_name(t.dtype()), " ", shape_str(t.shape()));
  TS_CHECK(t.is_contiguous(), kernel, ": ", name, " ", shape_str(t.shape()), " must be contiguous, strides ",
           shape_str(t.strides()));
}

void check_rows(const char* kernel, const char* name, const Tensor& x) {
  TS_CHECK(x.defined() && x.dim() == 2, kernel, ": expected ", name, " [R, C], got ",
           x.defined() ? shape_str(x.shape()) : "an undefined tensor");
}

template <typename T>
T* ptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr;
}

// Vector pieces need the row tensors to agree on their alignment mod 16 (same offsets within
// a row then land on 16-byte boundaries together).
bool same_alignment(std::initializer_list<const void*> pointers) {
  const uintptr_t first = reinterpret_cast<uintptr_t>(*pointers.begin()) % 16;
  for (const void* p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % 16 != first) return false;
  return true;
}

// About `per_thread` pieces a thread, a multiple of 32 threads, at most 1024. Kernels that take
// two exps per element (softmax, cross-entropy) run 2 pieces a thread, softmax_backward 1:
// short rows still fill the SM, whose limit of 32 resident blocks would otherwise cap it at
// 1024 threads with one warp a block.
int threads_for(int64_t C, int vec, int per_thread) {
  const int64_t pieces = (C + vec - 1) / vec, threads = (pieces + per_thread - 1) / per_thread;
  return static_cast<int>(std::min<int64_t>(1024, std::max<int64_t>(32, (threads + 31) / 32 * 32)));
}

// Launches kernel<T, kVec16<T>> or kernel<T, 1> over R rows.
template <typename T, typename MakeKernel, typename... Args>
void launch_rows(MakeKernel make_kernel, bool vec, int per_thread, int64_t R, int64_t C, cudaStream_t stream,
                 const char* name, Args... args) {
  if (R == 0) return;
  TS_CHECK(R <= INT32_MAX, name, ": ", R, " rows exceed the grid limit");
  const unsigned grid = static_cast<unsigned>(R);
  if (vec) make_kernel(Width<cuda::kVec16<T>>{})<<<grid, threads_for(C, cuda::kVec16<T>, per_thread), 0, stream>>>(args...);
  else make_kernel(Width<1>{})<<<grid, threads_for(C, 1, per_thread), 0, stream>>>(args...);
  cuda::check_launch(name, stream);
}

// Shared by the three cross-entropy entry points: checks, then one kernel launch.
template <bool kLoss, bool kGrad>
void run_cross_entropy(const char* kernel, int device, cudaStream_t stream, const Tensor& logits,
                       const Tensor& targets, int64_t ignore_index, const Tensor& dL_dlosses, const Tensor& losses,
                       const Tensor& dL_dlogits) {
  check_rows(kernel, "logits", logits);
  const int64_t N = logits.size(0), V = logits.size(1);
  CudaDeviceGuard guard(device);
  cuda::dispatch_cuda_float(logits.dtype(), kernel, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const DType stats = std::is_same_v<A, double> ? DType::F64 : DType::F32;
    check_arg(kernel, "logits", logits, logits.dtype(), {N, V}, device);
    TS_CHECK(targets.defined(), kernel, ": targets is undefined");
    check_arg(kernel, "targets", targets, targets.dtype(), {N}, device);
    if (kGrad) check_arg(kernel, "dL_dlosses", dL_dlosses, stats, {N}, device);
    if (kLoss) check_arg(kernel, "losses", losses, stats, {N}, device);
    if (kGrad) check_arg(kernel, "dL_dlogits", dL_dlogits, logits.dtype(), {N, V}, device);
    const bool vec = !kGrad || same_alignment({logits.data_ptr(), dL_dlogits.data_ptr()});
    auto launch = [&](auto index_tag) {
      using Index = decltype(index_tag);
      const CrossEntropyArgs<T, Index> a{ptr<T>(logits),     ptr<Index>(targets), ignore_index, ptr<A>(dL_dlosses),
                                         ptr<A>(losses),     ptr<T>(dL_dlogits),  V};
      launch_rows<T>([](auto width) { return cross_entropy_kernel<T, Index, decltype(width)::value, kLoss, kGrad>; },
                     vec, 2, N, V, stream, kernel, a);
    };
    if (targets.dtype() == DType::I32) launch(int32_t{});
    else if (targets.dtype() == DType::I64) launch(int64_t{});
    else TS_CHECK(false, kernel, ": expected an index dtype (i32, i64) for targets, got ", dtype_name(targets.dtype()));
  });
}

}  // namespace

void CudaBackend::softmax(const Tensor& x, const Tensor& y) {
  constexpr const char* kernel = "softmax";
  check_rows(kernel, "x", x);
  const int64_t R = x.size(0), C = x.size(1);
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(x.dtype(), kernel, [&](auto tag) {
    using T = decltype(tag);
    check_arg(kernel, "x", x, x.dtype(), {R, C}, device_);
    check_arg(kernel, "y", y, x.dtype(), {R, C}, device_);
    const bool vec = same_alignment({x.data_ptr(), y.data_ptr()});
    launch_rows<T>([](auto width) { return softmax_kernel<T, decltype(width)::value>; }, vec, 2, R, C, stream(),
                   "softmax_kernel", ptr<T>(x), ptr<T>(y), C);
  });
}

void CudaBackend::softmax_backward(const Tensor& y, const Tensor& dL_dy, const Tensor& dL_dx) {
  constexpr const char* kernel = "softmax_backward";
  check_rows(kernel, "y", y);
  const int64_t R = y.size(0), C = y.size(1);
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(y.dtype(), kernel, [&](auto tag) {
    using T = decltype(tag);
    check_arg(kernel, "y", y, y.dtype(), {R, C}, device_);
    check_arg(kernel, "dL_dy", dL_dy, y.dtype(), {R, C}, device_);
    check_arg(kernel, "dL_dx", dL_dx, y.dtype(), {R, C}, device_);
    const bool vec = same_alignment({y.data_ptr(), dL_dy.data_ptr(), dL_dx.data_ptr()});
    launch_rows<T>([](auto width) { return softmax_backward_kernel<T, decltype(width)::value>; }, vec, 1, R, C,
                   stream(), "softmax_backward_kernel", ptr<T>(y), ptr<T>(dL_dy), ptr<T>(dL_dx), C);
  });
}

void CudaBackend::cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                const Tensor& losses) {
  run_cross_entropy<true, false>("cross_entropy", device_, stream(), logits, targets, ignore_index, Tensor(), losses,
                                 Tensor());
}

void CudaBackend::cross_entropy_backward(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                         const Tensor& dL_dlosses, const Tensor& dL_dlogits) {
  run_cross_entropy<false, true>("cross_entropy_backward", device_, stream(), logits, targets, ignore_index,
                                 dL_dlosses, Tensor(), dL_dlogits);
}

void CudaBackend::cross_entropy_fused(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                                      const Tensor& dL_dlosses, const Tensor& losses, const Tensor& dL_dlogits) {
  run_cross_entropy<true, true>("cross_entropy_fused", device_, stream(), logits, targets, ignore_index, dL_dlosses,
                                losses, dL_dlogits);
}

}  // namespace tessera
