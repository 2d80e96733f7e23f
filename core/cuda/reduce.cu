// CUDA row reductions over the last dim of a contiguous x [R, C]: sum, max and min into out [R]
// (x's dtype) and argmax into i64, matching core/cpu/reduce.cpp: max and min propagate NaN,
// argmax returns the first maximum and a NaN counts as the maximum. Sums accumulate in acc_t
// (f32, f64 for f64); the CPU reference accumulates in f64.
//
// One warp per row up to kWarpMaxCols columns, one block of kBlockThreads per row above, rows
// read with 16-byte vectors where every row start is aligned. When the rows are too few to
// fill the GPU and long (a whole-tensor sum is one row), each row is cut into S equal pieces
// reduced into an acc_t buffer [R, S] that a second pass reduces: a fixed split, so the result
// does not depend on timing.
#include <cmath>
#include <type_traits>
#include <utility>

#include "core/cpu/strided.h"
#include "core/cuda/cuda_backend.h"
#include "core/cuda/kernel_utils.cuh"
#include "core/cuda/vectorized.cuh"

namespace tessera {

namespace {

using cuda::acc_t;

constexpr int kWarp = 32;
constexpr int kWarpKernelThreads = 256;  // 8 rows per block
constexpr int kBlockThreads = 512;
constexpr int64_t kWarpMaxCols = 2048;

template <RowReduceOp OP, typename A>
__device__ __forceinline__ A reduce_identity() {
  if constexpr (OP == RowReduceOp::Sum) {
    return A(0);
  } else if constexpr (OP == RowReduceOp::Max) {
    return -static_cast<A>(INFINITY);
  } else {
    return static_cast<A>(INFINITY);
  }
}

// f32 max/min that return NaN if either input is NaN (one instruction since sm_80).
__device__ __forceinline__ float max_nan(float a, float b) {
  float r;
  asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}
__device__ __forceinline__ float min_nan(float a, float b) {
  float r;
  asm("min.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}

// One step of the reduction; max and min keep a NaN once they meet one.
template <RowReduceOp OP, typename A>
__device__ __forceinline__ A reduce_step(A acc, A v) {
  if constexpr (OP == RowReduceOp::Sum) {
    return acc + v;
  } else if constexpr (std::is_same_v<A, float>) {
    return OP == RowReduceOp::Max ? max_nan(acc, v) : min_nan(acc, v);
  } else {
    if (isnan(acc)) return acc;
    if (isnan(v)) return v;
    if constexpr (OP == RowReduceOp::Max) {
      return v > acc ? v : acc;
    } else {
      return v < acc ? v : acc;
    }
  }
}

// Reduces v over the kGroup threads of a group (a warp, or the whole block); lane 0 gets the result.
template <int kGroup, RowReduceOp OP, typename A>
__device__ __forceinline__ A group_reduce(A v) {
#pragma unroll
  for (int width = kWarp / 2; width > 0; width /= 2) v = reduce_step<OP>(v, __shfl_xor_sync(0xffffffffu, v, width));
  if constexpr (kGroup > kWarp) {
    __shared__ A partial[kGroup / kWarp];
    int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
    if (lane == 0) partial[warp] = v;
    __syncthreads();
    v = lane < kGroup / kWarp ? partial[lane] : reduce_identity<OP, A>();
    if (warp == 0) {
#pragma unroll
      for (int width = kWarp / 2; width > 0; width /= 2) v = reduce_step<OP>(v, __shfl_xor_sync(0xffffffffu, v, width));
    }
  }
  return v;
}

// out[u] = reduction of row u / splits, columns [(u % splits) * span, + span) (clipped to cols).
// `vectorize`: x, cols and span are all aligned to a 16-byte vector.
template <int kGroup, RowReduceOp OP, typename T, typename O>
__global__ void reduce_rows_kernel(const T* x, O* out, int64_t units, int64_t cols, int64_t splits, int64_t span,
                                   bool vectorize) {
  using A = acc_t<T>;
  constexpr int N = cuda::kVec16<T>;
  const int64_t unit = int64_t(blockIdx.x) * (blockDim.x / kGroup) + threadIdx.x / kGroup;
  const int lane = threadIdx.x % kGroup;
  if (unit >= units) return;  // whole groups leave together
  const T* row = x + (unit / splits) * cols;
  const int64_t begin = (unit % splits) * span;
  const int64_t end = begin + span < cols ? begin + span : cols;
  A acc = reduce_identity<OP, A>();
  int64_t scalar_begin = begin;
  if (vectorize) {
    const int64_t vector_end = begin + (end - begin) / N * N;
#pragma unroll 4
    for (int64_t c = begin + int64_t(lane) * N; c < vector_end; c += int64_t(kGroup) * N) {
      cuda::PackedVec<T, N> v = cuda::load_vector<N>(row + c);
#pragma unroll
      for (int k = 0; k < N; ++k) acc = reduce_step<OP>(acc, cuda::load(v.v[k]));
    }
    scalar_begin = vector_end;
  }
  for (int64_t c = scalar_begin + lane; c < end; c += kGroup) acc = reduce_step<OP>(acc, cuda::load(row[c]));
  acc = group_reduce<kGroup, OP>(acc);
  if (lane == 0) out[unit] = cuda::store<O>(acc);
}

template <RowReduceOp OP, typename T, typename O>
void launch_reduce(const T* x, O* out, int64_t rows, int64_t cols, int64_t splits, int64_t span, cudaStream_t s) {
  constexpr int N = cuda::kVec16<T>;
  bool vectorize = cuda::is_aligned(x, 16) && cols % N == 0 && span % N == 0;
  int64_t units = rows * splits;
  if (span <= kWarpMaxCols) {
    constexpr int kRowsPerBlock = kWarpKernelThreads / kWarp;
    auto blocks = static_cast<unsigned int>((units + kRowsPerBlock - 1) / kRowsPerBlock);
    reduce_rows_kernel<kWarp, OP><<<blocks, kWarpKernelThreads, 0, s>>>(x, out, units, cols, splits, span, vectorize);
  } else {
    reduce_rows_kernel<kBlockThreads, OP>
        <<<static_cast<unsigned int>(units), kBlockThreads, 0, s>>>(x, out, units, cols, splits, span, vectorize);
  }
  cuda::check_launch("reduce_rows_kernel", s);
}

// Pieces per row: 1 unless the rows are too few to fill the GPU and each is long enough that
// every piece still gives a block several full sweeps.
int64_t splits_for(int64_t rows, int64_t cols, int vector, int device) {
  int sms = 0;
  TS_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t min_piece = int64_t(4) * kBlockThreads * vector;
  if (rows >= 2 * int64_t(sms) || cols < 2 * min_piece) return 1;
  int64_t want = (4 * int64_t(sms) + rows - 1) / rows;
  int64_t most = cols / min_piece;
  return want < most ? want : most;
}

template <typename Fn>
void dispatch_reduce_op(RowReduceOp op, Fn&& fn) {
  // clang-format off
  switch (op) {
    case RowReduceOp::Sum: fn(std::integral_constant<RowReduceOp, RowReduceOp::Sum>{}); return;
    case RowReduceOp::Max: fn(std::integral_constant<RowReduceOp, RowReduceOp::Max>{}); return;
    case RowReduceOp::Min: fn(std::integral_constant<RowReduceOp, RowReduceOp::Min>{}); return;
  }
  // clang-format on
  TS_CHECK(false, "reduce_rows: unknown op ", static_cast<int>(op));
}

// ---- argmax: (value, index) pairs, index -1 for "no element yet" ----

// Whether (v, i) beats (best, bi): NaN beats numbers, larger beats smaller, earlier wins ties.
template <typename A>
__device__ __forceinline__ bool argmax_better(A v, int64_t i, A best, int64_t bi) {
  if (i < 0) return false;
  if (bi < 0) return true;
  bool v_nan = isnan(v), best_nan = isnan(best);
  if (best_nan) return v_nan && i < bi;
  if (v_nan) return true;
  return v > best || (v == best && i < bi);
}

template <typename A>
__device__ __forceinline__ void argmax_shuffle(A& best, int64_t& bi) {
#pragma unroll
  for (int width = kWarp / 2; width > 0; width /= 2) {
    A v = __shfl_xor_sync(0xffffffffu, best, width);
    int64_t i = __shfl_xor_sync(0xffffffffu, bi, width);
    if (argmax_better(v, i, best, bi)) best = v, bi = i;
  }
}

template <int kGroup, typename T>
__global__ void argmax_rows_kernel(const T* x, int64_t* out, int64_t rows, int64_t cols, bool vectorize) {
  using A = acc_t<T>;
  constexpr int N = cuda::kVec16<T>;
  const int64_t row_index = int64_t(blockIdx.x) * (blockDim.x / kGroup) + threadIdx.x / kGroup;
  const int lane = threadIdx.x % kGroup;
  if (row_index >= rows) return;
  const T* row = x + row_index * cols;
  A best = A(0);
  int64_t bi = -1;
  bool best_nan = false;
  // This thread's columns come in increasing order: a later column wins only if strictly
  // larger or the first NaN (the short form of argmax_better for that case).
  auto consider = [&](A value, int64_t c) {
    if (!best_nan && (bi < 0 || !(value <= best))) best = value, bi = c, best_nan = isnan(value);
  };
  int64_t scalar_begin = 0;
  if (vectorize) {
    const int64_t vector_end = cols / N * N;
#pragma unroll 2
    for (int64_t c = int64_t(lane) * N; c < vector_end; c += int64_t(kGroup) * N) {
      cuda::PackedVec<T, N> v = cuda::load_vector<N>(row + c);
      A values[N];
#pragma unroll
      for (int k = 0; k < N; ++k) values[k] = cuda::load(v.v[k]);
      A vector_max = values[0];
#pragma unroll
      for (int k = 1; k < N; ++k) vector_max = reduce_step<RowReduceOp::Max>(vector_max, values[k]);
      // Only a vector holding a new maximum or a NaN can change the answer.
      if (!best_nan && (bi < 0 || !(vector_max <= best))) {
#pragma unroll
        for (int k = 0; k < N; ++k) consider(values[k], c + k);
      }
    }
    scalar_begin = vector_end;
  }
  for (int64_t c = scalar_begin + lane; c < cols; c += kGroup) consider(cuda::load(row[c]), c);
  argmax_shuffle(best, bi);
  if constexpr (kGroup > kWarp) {
    __shared__ A partial_value[kGroup / kWarp];
    __shared__ int64_t partial_index[kGroup / kWarp];
    int warp = threadIdx.x / kWarp;
    if (lane % kWarp == 0) partial_value[warp] = best, partial_index[warp] = bi;
    __syncthreads();
    if (warp == 0) {
      bool has = lane < kGroup / kWarp;
      best = has ? partial_value[lane] : A(0);
      bi = has ? partial_index[lane] : -1;
      argmax_shuffle(best, bi);
    }
  }
  if (lane == 0) out[row_index] = bi;
}

// The CPU's checks: x [R, C] contiguous, out contiguous with R elements; returns {R, C}.
std::pair<int64_t, int64_t> check_rows(const char* op, const Tensor& x, const Tensor& out, int device) {
  cuda::check_on_device(op, "x", x, device);
  cuda::check_on_device(op, "out", out, device);
  TS_CHECK(x.dim() == 2, op, ": x must be [R, C], got ", shape_str(x.shape()));
  int64_t rows = x.size(0);
  TS_CHECK(out.numel() == rows, op, ": out ", shape_str(out.shape()), " must hold one value per row of x ",
           shape_str(x.shape()));
  check_contiguous(op, "x", x);
  check_contiguous(op, "out", out);
  return {rows, x.size(1)};
}

}  // namespace

void CudaBackend::reduce_rows(RowReduceOp op, const Tensor& x, const Tensor& out) {
  auto [rows, cols] = check_rows("reduce_rows", x, out, device_);
  TS_CHECK(out.dtype() == x.dtype(), "reduce_rows: out is ", out.dtype(), " but x is ", x.dtype());
  TS_CHECK(op == RowReduceOp::Sum || cols > 0, "reduce_rows: max/min of an empty row (x ", shape_str(x.shape()), ")");
  CudaDeviceGuard guard(device_);
  cudaStream_t s = stream();
  cuda::dispatch_cuda_float(x.dtype(), "reduce_rows", [&](auto t) {
    using T = decltype(t);
    using A = acc_t<T>;
    if (rows == 0) return;
    const T* px = static_cast<const T*>(x.data_ptr());
    T* po = static_cast<T*>(out.data_ptr());
    constexpr int N = cuda::kVec16<T>;
    int64_t splits = splits_for(rows, cols, N, device_);
    dispatch_reduce_op(op, [&](auto op_constant) {
      constexpr RowReduceOp OP = decltype(op_constant)::value;
      if (splits == 1) {
        launch_reduce<OP>(px, po, rows, cols, 1, cols, s);
        return;
      }
      int64_t span = ((cols + splits - 1) / splits + N - 1) / N * N;
      splits = (cols + span - 1) / span;
      Tensor partial = Tensor::empty({rows, splits}, std::is_same_v<A, double> ? DType::F64 : DType::F32, device());
      A* pp = static_cast<A*>(partial.data_ptr());
      launch_reduce<OP>(px, pp, rows, cols, splits, span, s);
      launch_reduce<OP>(static_cast<const A*>(pp), po, rows, splits, 1, splits, s);
    });
  });
}

void CudaBackend::argmax_rows(const Tensor& x, const Tensor& out_i64) {
  auto [rows, cols] = check_rows("argmax_rows", x, out_i64, device_);
  TS_CHECK(out_i64.dtype() == DType::I64, "argmax_rows: out must be i64, got ", out_i64.dtype());
  TS_CHECK(cols > 0, "argmax_rows: empty rows (x ", shape_str(x.shape()), ")");
  CudaDeviceGuard guard(device_);
  cudaStream_t s = stream();
  cuda::dispatch_cuda_float(x.dtype(), "argmax_rows", [&](auto t) {
    using T = decltype(t);
    if (rows == 0) return;
    constexpr int N = cuda::kVec16<T>;
    const T* px = static_cast<const T*>(x.data_ptr());
    int64_t* po = static_cast<int64_t*>(out_i64.data_ptr());
    bool vectorize = cuda::is_aligned(px, 16) && cols % N == 0;
    if (cols <= kWarpMaxCols) {
      constexpr int kRowsPerBlock = kWarpKernelThreads / kWarp;
      auto blocks = static_cast<unsigned int>((rows + kRowsPerBlock - 1) / kRowsPerBlock);
      argmax_rows_kernel<kWarp><<<blocks, kWarpKernelThreads, 0, s>>>(px, po, rows, cols, vectorize);
    } else {
      argmax_rows_kernel<kBlockThreads>
          <<<static_cast<unsigned int>(rows), kBlockThreads, 0, s>>>(px, po, rows, cols, vectorize);
    }
    cuda::check_launch("argmax_rows_kernel", s);
  });
}

}  // namespace tessera
