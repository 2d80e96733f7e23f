// CUDA layer norm and RMS norm over the last dim of x [R, C], fused with the residual add of a
// pre-norm block (contract in core/backend.h, reference math in core/cpu/norm.cpp).
//
// Forward: one block per row. The block reads the row once, in 16-byte vectors when C and
// every pointer allow it, rounds h = x + residual to the activation dtype exactly as the CPU
// does (and writes it to residual_out), keeps h in shared memory as acc_t, and takes the mean
// and the variance in two passes over that copy (no E[x^2] - E[x]^2 cancellation).
// Shared-memory layout: element j of vector v sits at [j * nvec + v], so the thread that owns
// vector v reads only its own values, without bank conflicts.
//
// Backward: a grid of G blocks (as many as fit on the GPU at once) walks the rows, each block
// several rows at a time. A thread owns the same columns on every row, so it accumulates
// dL_dweight / dL_dbias for them in shared memory without atomics; the block sums its row
// slots in order into one partial row and a second kernel sums the G partial rows [G, C]
// column by column in a fixed order. Same bits on every run (for a given GPU model, which
// sets G). Rows wider than a block's threads read their further vectors twice (row sums, then
// dL_dh); the second read hits L1/L2. (Loading the next rows ahead, software-pipelined, was
// measured slower on H100: fewer resident threads for the extra registers.)
#include <algorithm>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/kernel_utils.cuh"

namespace tessera {
namespace {

using cuda::acc_t;
using cuda::block_reduce;
using cuda::load;
using cuda::PackedVec;
using cuda::store;
using cuda::SumOp;

extern __shared__ __align__(16) unsigned char norm_smem[];

constexpr int kNormForwardThreads = 1024;   // most threads of a forward block (one row)
constexpr int kNormBackwardThreads = 512;   // most threads of a backward block (blockDim.x * y)

template <typename A>
__device__ __forceinline__ A rsqrt_of(A x) {
  if constexpr (std::is_same_v<A, double>) return 1.0 / ::sqrt(x);
  else return 1.0f / ::sqrtf(x);  // IEEE sqrt and division, as the CPU's 1 / std::sqrt
}

template <typename T>
struct NormForwardArgs {
  const T* x;
  const T* residual;  // nullptr: no residual
  T* residual_out;
  const T* weight;
  const T* bias;  // nullptr: no bias
  T* y;
  acc_t<T>* mean;  // layer norm only
  acc_t<T>* rstd;
  int64_t C;
  acc_t<T> eps;
};

template <typename T, int kVec, bool kRms>
__global__ void __launch_bounds__(kNormForwardThreads) norm_forward_kernel(NormForwardArgs<T> a) {
  using A = acc_t<T>;
  using Vec = PackedVec<T, kVec>;
  A* h = reinterpret_cast<A*>(norm_smem);
  const int64_t C = a.C, nvec = C / kVec, base = int64_t(blockIdx.x) * C;
  const Vec* x = reinterpret_cast<const Vec*>(a.x + base);
  A local = 0;  // sum of h (layer norm) or of h^2 (RMS norm) over this thread's elements
  for (int64_t v = threadIdx.x; v < nvec; v += blockDim.x) {
    Vec hv = x[v];
    if (a.residual) {
      const Vec rv = reinterpret_cast<const Vec*>(a.residual + base)[v];
#pragma unroll
      for (int j = 0; j < kVec; ++j) hv.v[j] = store<T>(load(hv.v[j]) + load(rv.v[j]));
      reinterpret_cast<Vec*>(a.residual_out + base)[v] = hv;
    }
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      const A hj = load(hv.v[j]);
      h[j * nvec + v] = hj;
      local += kRms ? hj * hj : hj;
    }
  }
  const A total = block_reduce(local, SumOp{}, A(0));
  A mean = 0, rstd;
  if constexpr (kRms) {
    rstd = rsqrt_of(total / A(C) + a.eps);
  } else {
    mean = total / A(C);
    A dev = 0;
    for (int64_t v = threadIdx.x; v < nvec; v += blockDim.x) {
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        const A d = h[j * nvec + v] - mean;
        dev += d * d;
      }
    }
    rstd = rsqrt_of(block_reduce(dev, SumOp{}, A(0)) / A(C) + a.eps);
  }
  const Vec* w = reinterpret_cast<const Vec*>(a.weight);
  const Vec* b = reinterpret_cast<const Vec*>(a.bias);
  Vec* y = reinterpret_cast<Vec*>(a.y + base);
  for (int64_t v = threadIdx.x; v < nvec; v += blockDim.x) {
    const Vec wv = w[v];
    Vec bv{}, yv;
    if (b) bv = b[v];
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      const A shift = b ? load(bv.v[j]) : A(0);
      yv.v[j] = store<T>((h[j * nvec + v] - mean) * rstd * load(wv.v[j]) + shift);
    }
    y[v] = yv;
  }
  if (threadIdx.x == 0) {
    if constexpr (!kRms) a.mean[blockIdx.x] = mean;
    a.rstd[blockIdx.x] = rstd;
  }
}

template <typename T>
struct NormBackwardArgs {
  const T* h;
  const T* weight;
  const acc_t<T>* mean;  // layer norm only
  const acc_t<T>* rstd;
  const T* dy;
  const T* dres;  // nullptr: no gradient arrives at residual_out
  T* dh;
  acc_t<T>* dw_partial;  // [G, C]
  acc_t<T>* db_partial;  // [G, C] or nullptr
  int64_t R, C;
};

// Sums x and y over the threads of the block that share threadIdx.y (blockDim.x a multiple of
// 32); each of them receives the same bits.
template <typename A>
__device__ void row_group_sum2(A& x, A& y) {
  __shared__ A partial[2][32];
  for (int offset = 16; offset > 0; offset >>= 1) {
    x += __shfl_xor_sync(0xffffffffu, x, offset);
    y += __shfl_xor_sync(0xffffffffu, y, offset);
  }
  const int tid = threadIdx.y * blockDim.x + threadIdx.x, warps_per_row = blockDim.x / 32;
  __syncthreads();  // an earlier call's readers are done with `partial`
  if (tid % 32 == 0) {
    partial[0][tid / 32] = x;
    partial[1][tid / 32] = y;
  }
  __syncthreads();
  x = y = 0;
  for (int k = 0; k < warps_per_row; ++k) {
    x += partial[0][threadIdx.y * warps_per_row + k];
    y += partial[1][threadIdx.y * warps_per_row + k];
  }
}

// Row sums of dxhat = dy * w and dxhat * xhat over one vector.
template <typename T, int kVec>
__device__ __forceinline__ void add_row_sums(const PackedVec<T, kVec>& hv, const PackedVec<T, kVec>& dyv,
                                             const PackedVec<T, kVec>& wv, acc_t<T> mean, acc_t<T> rstd,
                                             acc_t<T>& sum_g, acc_t<T>& sum_gx) {
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    const acc_t<T> xhat = (load(hv.v[j]) - mean) * rstd, g = load(dyv.v[j]) * load(wv.v[j]);
    sum_g += g;
    sum_gx += g * xhat;
  }
}

// dL_dh of one vector; adds dy * xhat and dy into the column accumulators dw[j], db[j]
// (element j at stride `stride`: registers or shared memory).
template <typename T, int kVec>
__device__ __forceinline__ PackedVec<T, kVec> backward_vector(const PackedVec<T, kVec>& hv, const PackedVec<T, kVec>& dyv,
                                                              const PackedVec<T, kVec>& wv, const PackedVec<T, kVec>& rv,
                                                              bool has_dres, acc_t<T> mean, acc_t<T> rstd,
                                                              acc_t<T> mean_g, acc_t<T> mean_gx, acc_t<T>* dw,
                                                              acc_t<T>* db, int64_t stride) {
  using A = acc_t<T>;
  PackedVec<T, kVec> out;
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    const A xhat = (load(hv.v[j]) - mean) * rstd, dyj = load(dyv.v[j]);
    const A through_residual = has_dres ? load(rv.v[j]) : A(0);
    out.v[j] = store<T>(rstd * (dyj * load(wv.v[j]) - mean_g - xhat * mean_gx) + through_residual);
    dw[j * stride] += dyj * xhat;
    if (db) db[j * stride] += dyj;
  }
  return out;
}

// dxhat = dy * w; layer norm: dh = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) + dres,
// RMS norm: dh = rstd (dxhat - xhat mean(dxhat xhat)) + dres. Block (x, y): the y-th row of
// each group of blockDim.y rows. The h, dL_dy and dL_dresidual_out vectors of a thread's first
// vector (its only one when the row has at most blockDim.x vectors) are loaded together and
// stay in registers between the two passes; further vectors are read again (L1/L2). Column
// sums accumulate per y slot in shared memory and are added over y in order at the end.
template <typename T, int kVec, bool kRms>
__global__ void __launch_bounds__(kNormBackwardThreads) norm_backward_kernel(NormBackwardArgs<T> a) {
  using A = acc_t<T>;
  using Vec = PackedVec<T, kVec>;
  const int64_t C = a.C, nvec = C / kVec, slots = int64_t(blockDim.y) * C;
  A* dw = reinterpret_cast<A*>(norm_smem) + threadIdx.y * C;  // [j * nvec + v], like the forward's h
  A* db = a.db_partial ? dw + slots : nullptr;
  for (int64_t v = threadIdx.x; v < nvec; v += blockDim.x) {
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      dw[j * nvec + v] = 0;
      if (db) db[j * nvec + v] = 0;
    }
  }
  const Vec* w = reinterpret_cast<const Vec*>(a.weight);
  const int64_t v0 = threadIdx.x, stride = int64_t(gridDim.x) * blockDim.y;
  // Every thread runs the same number of iterations (block reductions inside).
  for (int64_t first = int64_t(blockIdx.x) * blockDim.y; first < a.R; first += stride) {
    const int64_t row = first + threadIdx.y;
    const bool valid = row < a.R, mine = valid && v0 < nvec;
    const int64_t base = valid ? row * C : 0;
    const Vec* h = reinterpret_cast<const Vec*>(a.h + base);
    const Vec* dy = reinterpret_cast<const Vec*>(a.dy + base);
    const Vec* dres = a.dres ? reinterpret_cast<const Vec*>(a.dres + base) : nullptr;
    const A mean = kRms || !valid ? A(0) : a.mean[row], rstd = valid ? a.rstd[row] : A(0);
    Vec h0{}, dy0{}, r0{};
    if (mine) {
      h0 = h[v0];
      dy0 = dy[v0];
      if (dres) r0 = dres[v0];
    }
    A sum_g = 0, sum_gx = 0;
    if (mine) add_row_sums(h0, dy0, w[v0], mean, rstd, sum_g, sum_gx);
    for (int64_t v = v0 + blockDim.x; valid && v < nvec; v += blockDim.x)
      add_row_sums(h[v], dy[v], w[v], mean, rstd, sum_g, sum_gx);
    row_group_sum2(sum_g, sum_gx);
    const A mean_g = kRms ? A(0) : sum_g / A(C), mean_gx = sum_gx / A(C);
    Vec* dh = reinterpret_cast<Vec*>(a.dh + base);
    if (mine)
      dh[v0] = backward_vector(h0, dy0, w[v0], r0, dres != nullptr, mean, rstd, mean_g, mean_gx, dw + v0,
                               db ? db + v0 : nullptr, nvec);
    for (int64_t v = v0 + blockDim.x; valid && v < nvec; v += blockDim.x) {
      Vec rv{};
      if (dres) rv = dres[v];
      dh[v] = backward_vector(h[v], dy[v], w[v], rv, dres != nullptr, mean, rstd, mean_g, mean_gx, dw + v,
                              db ? db + v : nullptr, nvec);
    }
  }
  __syncthreads();
  // Partial row of this block: slot s = j * nvec + v holds column v * kVec + j; sum over y in order.
  const A* dw_slots = reinterpret_cast<const A*>(norm_smem);
  const int threads = blockDim.x * blockDim.y;
  for (int64_t s = threadIdx.y * blockDim.x + threadIdx.x; s < C; s += threads) {
    const int64_t column = (s % nvec) * kVec + s / nvec, out = int64_t(blockIdx.x) * C + column;
    A wsum = 0, bsum = 0;
    for (unsigned k = 0; k < blockDim.y; ++k) {
      wsum += dw_slots[k * C + s];
      if (db) bsum += dw_slots[slots + k * C + s];
    }
    a.dw_partial[out] = wsum;
    if (db) a.db_partial[out] = bsum;
  }
}

// out[c] = sum over g of partial[g, c], in a fixed order; blockIdx.y picks dL_dweight (0) or
// dL_dbias (1). Block (32, 32): x picks the column, y strides over the partial rows; the 32
// per-y sums are then added in order of y.
template <typename T>
__global__ void column_sum_kernel(const acc_t<T>* dw_partial, const acc_t<T>* db_partial, int64_t G, int64_t C,
                                  T* dweight, T* dbias) {
  using A = acc_t<T>;
  __shared__ A tile[32][33];
  const A* partial = blockIdx.y == 0 ? dw_partial : db_partial;
  T* out = blockIdx.y == 0 ? dweight : dbias;
  const int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
  A sum = 0;
  if (c < C)
    for (int64_t g = threadIdx.y; g < G; g += 32) sum += partial[g * C + c];
  tile[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    A total = 0;
    for (int k = 0; k < 32; ++k) total += tile[k][threadIdx.x];
    out[c] = store<T>(total);
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

void check_rows(const char* kernel, const Tensor& x) {
  TS_CHECK(x.defined() && x.dim() == 2, kernel, ": expected x [R, C], got ",
           x.defined() ? shape_str(x.shape()) : "an undefined tensor");
}

template <typename T>
T* ptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr;
}

// The 16-byte vector path needs C a multiple of the vector and every row pointer aligned.
template <typename T>
bool can_vectorize(int64_t C, std::initializer_list<const void*> pointers) {
  if (C % cuda::kVec16<T> != 0) return false;
  for (const void* p : pointers)
    if (p && !cuda::is_aligned(p, 16)) return false;
  return true;
}

// A thread per vector of the row (a multiple of 32, at most `limit`).
int threads_for(int64_t nvec, int limit) {
  return static_cast<int>(std::min<int64_t>(limit, std::max<int64_t>(32, (nvec + 31) / 32 * 32)));
}

// Lets `kernel` use `bytes` of dynamic shared memory (above the 48 KiB default), or throws.
template <typename Kernel>
void allow_shared_memory(Kernel kernel, size_t bytes, int device, const char* name, int64_t C) {
  int optin = 0;
  TS_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const size_t limit = static_cast<size_t>(optin) - 1024;  // room for block_reduce's scratch
  TS_CHECK(bytes <= limit, name, ": rows of C = ", C, " need ", bytes, " bytes of shared memory, more than the ",
           limit, " this GPU gives a block");
  if (bytes > 48 * 1024)
    TS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

template <typename T, bool kRms>
void launch_norm_forward(const NormForwardArgs<T>& a, int64_t R, int device, cudaStream_t stream, const char* name) {
  if (R == 0 || a.C == 0) return;
  TS_CHECK(R <= INT32_MAX, name, ": ", R, " rows exceed the grid limit");
  const bool vec = can_vectorize<T>(a.C, {a.x, a.residual, a.residual_out, a.weight, a.bias, a.y});
  auto launch = [&](auto kernel, int64_t vec_width) {
    const size_t bytes = static_cast<size_t>(a.C) * sizeof(acc_t<T>);
    allow_shared_memory(kernel, bytes, device, name, a.C);
    kernel<<<static_cast<unsigned>(R), threads_for(a.C / vec_width, kNormForwardThreads), bytes, stream>>>(a);
    cuda::check_launch(name, stream);
  };
  if (vec) launch(norm_forward_kernel<T, cuda::kVec16<T>, kRms>, cuda::kVec16<T>);
  else launch(norm_forward_kernel<T, 1, kRms>, 1);
}

// Backward kernel, then the column sums of its partials into dL_dweight (and dL_dbias).
template <typename T, bool kRms>
void launch_norm_backward(NormBackwardArgs<T> a, T* dweight, T* dbias, int device, cudaStream_t stream,
                          const char* name) {
  using A = acc_t<T>;
  if (a.C == 0) return;
  const bool vec = can_vectorize<T>(a.C, {a.h, a.weight, a.dy, a.dres, a.dh});
  const int64_t vec_width = vec ? cuda::kVec16<T> : 1;
  // Rows of blockDim.x threads, blockDim.y rows at a time (at most 512 threads a block), and
  // as many blocks as fit on the GPU at once; G rows of partial sums.
  const int threads = threads_for(a.C / vec_width, kNormBackwardThreads),
            rows = std::max(1, kNormBackwardThreads / threads);
  const size_t bytes = static_cast<size_t>(a.C) * sizeof(A) * rows * (dbias ? 2 : 1);
  auto kernel = vec ? norm_backward_kernel<T, cuda::kVec16<T>, kRms> : norm_backward_kernel<T, 1, kRms>;
  allow_shared_memory(kernel, bytes, device, name, a.C);
  int sms = 0, per_sm = 0;
  TS_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  TS_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads * rows, bytes));
  const int64_t G = std::min<int64_t>((a.R + rows - 1) / rows, int64_t(sms) * std::max(1, per_sm));
  const Device dev = Device::cuda(device);
  const DType stats = std::is_same_v<A, double> ? DType::F64 : DType::F32;
  Tensor dw_partial = Tensor::empty(Shape{G, a.C}, stats, dev);
  Tensor db_partial = dbias ? Tensor::empty(Shape{G, a.C}, stats, dev) : Tensor();
  a.dw_partial = ptr<A>(dw_partial);
  a.db_partial = ptr<A>(db_partial);
  if (G > 0) {
    kernel<<<static_cast<unsigned>(G), dim3(threads, rows), bytes, stream>>>(a);
    cuda::check_launch(name, stream);
  }
  const dim3 block(32, 32), grid(static_cast<unsigned>((a.C + 31) / 32), dbias ? 2 : 1);
  column_sum_kernel<T><<<grid, block, 0, stream>>>(a.dw_partial, a.db_partial, G, a.C, dweight, dbias);
  cuda::check_launch("norm column_sum_kernel", stream);
}

// h = x + residual goes to residual_out: checks the pair when a residual is given.
void check_residual(const char* kernel, const Tensor& x, const Tensor& residual, const Tensor& residual_out,
                    int device) {
  if (!residual.defined()) return;
  check_arg(kernel, "residual", residual, x.dtype(), x.shape(), device);
  check_arg(kernel, "residual_out", residual_out, x.dtype(), x.shape(), device);
}

}  // namespace

void CudaBackend::layer_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, const Tensor& bias,
                             double eps, const Tensor& y, const Tensor& residual_out, const Tensor& mean,
                             const Tensor& rstd) {
  constexpr const char* kernel = "layer_norm";
  check_rows(kernel, x);
  const int64_t R = x.size(0), C = x.size(1);
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(x.dtype(), kernel, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const DType stats = std::is_same_v<A, double> ? DType::F64 : DType::F32;
    check_arg(kernel, "x", x, x.dtype(), {R, C}, device_);
    check_residual(kernel, x, residual, residual_out, device_);
    check_arg(kernel, "weight", weight, x.dtype(), {C}, device_);
    if (bias.defined()) check_arg(kernel, "bias", bias, x.dtype(), {C}, device_);
    check_arg(kernel, "y", y, x.dtype(), {R, C}, device_);
    check_arg(kernel, "mean", mean, stats, {R}, device_);
    check_arg(kernel, "rstd", rstd, stats, {R}, device_);
    const NormForwardArgs<T> a{ptr<T>(x),   ptr<T>(residual), residual.defined() ? ptr<T>(residual_out) : nullptr,
                               ptr<T>(weight), ptr<T>(bias),  ptr<T>(y),
                               ptr<A>(mean), ptr<A>(rstd),    C,
                               A(eps)};
    launch_norm_forward<T, false>(a, R, device_, stream(), "layer_norm_forward_kernel");
  });
}

void CudaBackend::layer_norm_backward(const Tensor& h, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                                      const Tensor& dL_dy, const Tensor& dL_dresidual_out, const Tensor& dL_dh,
                                      const Tensor& dL_dweight, const Tensor& dL_dbias) {
  constexpr const char* kernel = "layer_norm_backward";
  check_rows(kernel, h);
  const int64_t R = h.size(0), C = h.size(1);
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(h.dtype(), kernel, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const DType stats = std::is_same_v<A, double> ? DType::F64 : DType::F32;
    check_arg(kernel, "h", h, h.dtype(), {R, C}, device_);
    check_arg(kernel, "weight", weight, h.dtype(), {C}, device_);
    check_arg(kernel, "mean", mean, stats, {R}, device_);
    check_arg(kernel, "rstd", rstd, stats, {R}, device_);
    check_arg(kernel, "dL_dy", dL_dy, h.dtype(), {R, C}, device_);
    check_arg(kernel, "dL_dh", dL_dh, h.dtype(), {R, C}, device_);
    check_arg(kernel, "dL_dweight", dL_dweight, h.dtype(), {C}, device_);
    if (dL_dbias.defined()) check_arg(kernel, "dL_dbias", dL_dbias, h.dtype(), {C}, device_);
    if (dL_dresidual_out.defined()) check_arg(kernel, "dL_dresidual_out", dL_dresidual_out, h.dtype(), {R, C}, device_);
    const NormBackwardArgs<T> a{ptr<T>(h),     ptr<T>(weight), ptr<A>(mean), ptr<A>(rstd), ptr<T>(dL_dy),
                                ptr<T>(dL_dresidual_out), ptr<T>(dL_dh), nullptr, nullptr, R, C};
    launch_norm_backward<T, false>(a, ptr<T>(dL_dweight), ptr<T>(dL_dbias), device_, stream(),
                                   "layer_norm_backward_kernel");
  });
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, double eps, const Tensor& y,
                           const Tensor& residual_out, const Tensor& rstd) {
  constexpr const char* kernel = "rms_norm";
  check_rows(kernel, x);
  const int64_t R = x.size(0), C = x.size(1);
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(x.dtype(), kernel, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const DType stats = std::is_same_v<A, double> ? DType::F64 : DType::F32;
    check_arg(kernel, "x", x, x.dtype(), {R, C}, device_);
    check_residual(kernel, x, residual, residual_out, device_);
    check_arg(kernel, "weight", weight, x.dtype(), {C}, device_);
    check_arg(kernel, "y", y, x.dtype(), {R, C}, device_);
    check_arg(kernel, "rstd", rstd, stats, {R}, device_);
    const NormForwardArgs<T> a{ptr<T>(x), ptr<T>(residual), residual.defined() ? ptr<T>(residual_out) : nullptr,
                               ptr<T>(weight), nullptr, ptr<T>(y), nullptr, ptr<A>(rstd), C, A(eps)};
    launch_norm_forward<T, true>(a, R, device_, stream(), "rms_norm_forward_kernel");
  });
}

void CudaBackend::rms_norm_backward(const Tensor& h, const Tensor& weight, const Tensor& rstd, const Tensor& dL_dy,
                                    const Tensor& dL_dresidual_out, const Tensor& dL_dh, const Tensor& dL_dweight) {
  constexpr const char* kernel = "rms_norm_backward";
  check_rows(kernel, h);
  const int64_t R = h.size(0), C = h.size(1);
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(h.dtype(), kernel, [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const DType stats = std::is_same_v<A, double> ? DType::F64 : DType::F32;
    check_arg(kernel, "h", h, h.dtype(), {R, C}, device_);
    check_arg(kernel, "weight", weight, h.dtype(), {C}, device_);
    check_arg(kernel, "rstd", rstd, stats, {R}, device_);
    check_arg(kernel, "dL_dy", dL_dy, h.dtype(), {R, C}, device_);
    check_arg(kernel, "dL_dh", dL_dh, h.dtype(), {R, C}, device_);
    check_arg(kernel, "dL_dweight", dL_dweight, h.dtype(), {C}, device_);
    if (dL_dresidual_out.defined()) check_arg(kernel, "dL_dresidual_out", dL_dresidual_out, h.dtype(), {R, C}, device_);
    const NormBackwardArgs<T> a{ptr<T>(h),     ptr<T>(weight), nullptr, ptr<A>(rstd), ptr<T>(dL_dy),
                                ptr<T>(dL_dresidual_out), ptr<T>(dL_dh), nullptr, nullptr, R, C};
    launch_norm_backward<T, true>(a, ptr<T>(dL_dweight), nullptr, device_, stream(), "rms_norm_backward_kernel");
  });
}

}  // namespace tessera
