// CUDA layer norm and RMS norm backward over the last dim of [R, C], with the residual's
// gradient added (contract in core/backend.h, reference math in core/cpu/norm.cpp; the forward
// is in norm_forward.cu).
//
// A grid of G blocks (as many as are resident at once) walks the rows; each block is several
// independent row groups of a few warps, each taking one row at a time. A thread owns the same
// columns on every row, so it accumulates dL_dweight / dL_dbias for them without atomics; the
// block sums its groups in order into one partial row and a second kernel sums the G partial
// rows [G, C] column by column in a fixed order. Same bits on every run (for a given GPU model,
// which sets G). Rows that fit shared memory twice per group go through
// norm_backward_staged_kernel: the next row streams into shared memory (cp.async) while the
// current one is reduced and written. Wider rows use norm_backward_wide_kernel, which keeps a
// thread's first vector in registers and reads further ones twice (L1/L2).
#include <algorithm>

#include "core/cuda/norm_common.cuh"

namespace tessera {
namespace {

using namespace norm;

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

constexpr int kWideThreads = 768;     // most threads of a norm_backward_wide_kernel block
constexpr int kStagedThreads = 1024;  // most threads of a norm_backward_staged_kernel block
constexpr int kStages = 2;            // rows of a row group in shared memory: one read, one loading

// Waits for the `threads` threads of row group `group` (named barrier 1 + group; 0 is
// __syncthreads').
__device__ __forceinline__ void group_barrier(int group, int threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(group + 1), "r"(threads) : "memory");
}

// Sums x and y over the `warps` warps of a row group; all of its threads receive the same
// bits. `scratch` holds [2 parities][2 sums][warps]: alternating parities let one barrier a
// row suffice (a thread can only overwrite a parity after every thread of the group passed
// the next row's barrier, i.e. read this one).
template <typename A>
__device__ __forceinline__ void row_group_sum2(A& x, A& y, A* scratch, int warps, int group, int parity) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    x += __shfl_xor_sync(0xffffffffu, x, offset);
    y += __shfl_xor_sync(0xffffffffu, y, offset);
  }
  if (warps == 1) return;
  const int lane = threadIdx.x % 32, warp = (threadIdx.x / 32) % warps;
  A* slots = scratch + parity * 2 * warps;
  if (lane == 0) {
    slots[warp] = x;
    slots[warps + warp] = y;
  }
  group_barrier(group, 32 * warps);
  x = y = 0;
  for (int k = 0; k < warps; ++k) {
    x += slots[k];
    y += slots[warps + k];
  }
}

// Hides v's bits from the optimizer: the second pass then unpacks the 16-bit values again
// instead of keeping the first pass's f32 copies alive across the row sum (twice the registers).
template <typename V>
__device__ __forceinline__ void keep_packed(V& v) {
  if constexpr (sizeof(V) % 4 == 0) {
    uint32_t* words = reinterpret_cast<uint32_t*>(&v);
#pragma unroll
    for (int i = 0; i < static_cast<int>(sizeof(V) / 4); ++i) asm volatile("" : "+r"(words[i]));
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

// dL_dh of one vector; adds dy * xhat and dy into the column accumulators dw[32 j], db[32 j]
// in shared memory (see accumulator_slot).
template <typename T, int kVec>
__device__ __forceinline__ PackedVec<T, kVec> backward_vector(const PackedVec<T, kVec>& hv,
                                                              const PackedVec<T, kVec>& dyv,
                                                              const PackedVec<T, kVec>& wv,
                                                              const PackedVec<T, kVec>& rv, bool has_dres,
                                                              acc_t<T> mean, acc_t<T> rstd, acc_t<T> mean_g,
                                                              acc_t<T> mean_gx, acc_t<T>* dw, acc_t<T>* db) {
  using A = acc_t<T>;
  PackedVec<T, kVec> out;
#pragma unroll
  for (int j = 0; j < kVec; ++j) {
    const A xhat = (load(hv.v[j]) - mean) * rstd, dyj = load(dyv.v[j]);
    const A through_residual = has_dres ? load(rv.v[j]) : A(0);
    out.v[j] = store<T>(rstd * (dyj * load(wv.v[j]) - mean_g - xhat * mean_gx) + through_residual);
    dw[32 * j] += dyj * xhat;
    if (db) db[32 * j] += dyj;
  }
  return out;
}

// Shared-memory slot of element j of vector v in a row group's column accumulators: the
// vectors of each run of 32 lie element-major, [v / 32][j][v % 32], so a warp touches 32
// consecutive words (no bank conflicts) and element j sits at a constant offset 32 j.
template <int kVec>
__device__ __forceinline__ int accumulator_slot(int v, int j) {
  return (v & ~31) * kVec + 32 * j + (v & 31);
}

// The backward of rows too wide for norm_backward_staged_kernel (below). Row group g of block
// b takes rows b * groups + g, then every (gridDim.x * groups)-th row; groups never wait for
// each other inside the loop. Lane t of a group owns the vectors t + k * group_threads: the
// first one (h, dL_dy, dL_dresidual_out, weight) stays in registers between the row sums and
// dL_dh, further ones are read again (L1/L2). Column sums accumulate per group in shared
// memory and are added over the groups in order at the end into the block's partial row.
template <typename T, int kVec, bool kRms>
__global__ void __launch_bounds__(kWideThreads) norm_backward_wide_kernel(NormBackwardArgs<T> a, int warps_per_row) {
  using A = acc_t<T>;
  using Vec = PackedVec<T, kVec>;
  const int nvec = static_cast<int>(a.C / kVec);   // C < 2^31: checked by the launcher
  const int slots = (nvec + 31) / 32 * 32 * kVec;  // accumulator slots of a group
  const int group_threads = 32 * warps_per_row, groups = blockDim.x / group_threads;
  const int group = threadIdx.x / group_threads, t = threadIdx.x % group_threads;
  const bool bias = a.db_partial != nullptr;
  A* accumulators = reinterpret_cast<A*>(norm_smem);  // [groups][slots] for dw, then for db
  const int accumulator_count = groups * slots * (bias ? 2 : 1);
  A* scratch = accumulators + accumulator_count + group * 4 * warps_per_row;
  for (int s = threadIdx.x; s < accumulator_count; s += blockDim.x) accumulators[s] = 0;
  __syncthreads();
  A* dw = accumulators + group * slots + accumulator_slot<kVec>(t, 0);
  A* db = bias ? dw + groups * slots : nullptr;
  const int slot_step = group_threads * kVec;  // from vector v to v + group_threads
  const Vec* w = reinterpret_cast<const Vec*>(a.weight);
  const bool owner = t < nvec;  // the thread has a first vector
  Vec w0{};
  if (owner) w0 = w[t];
  int parity = 0;
  for (int64_t row = int64_t(blockIdx.x) * groups + group; row < a.R; row += int64_t(gridDim.x) * groups) {
    const int64_t base = row * a.C;
    const Vec* h = reinterpret_cast<const Vec*>(a.h + base);
    const Vec* dy = reinterpret_cast<const Vec*>(a.dy + base);
    const Vec* dres = a.dres ? reinterpret_cast<const Vec*>(a.dres + base) : nullptr;
    Vec h0{}, dy0{}, r0{};
    if (owner) {
      h0 = h[t];
      dy0 = dy[t];
      if (dres) r0 = dres[t];
    }
    const A mean = kRms ? A(0) : a.mean[row], rstd = a.rstd[row];
    A sum_g = 0, sum_gx = 0;
    if (owner) add_row_sums(h0, dy0, w0, mean, rstd, sum_g, sum_gx);
    for (int v = t + group_threads; v < nvec; v += group_threads)
      add_row_sums(h[v], dy[v], w[v], mean, rstd, sum_g, sum_gx);
    row_group_sum2(sum_g, sum_gx, scratch, warps_per_row, group, parity);
    parity ^= 1;
    keep_packed(h0);
    keep_packed(dy0);
    const A mean_g = kRms ? A(0) : sum_g / A(a.C), mean_gx = sum_gx / A(a.C);
    Vec* dh = reinterpret_cast<Vec*>(a.dh + base);
    if (owner) dh[t] = backward_vector(h0, dy0, w0, r0, dres != nullptr, mean, rstd, mean_g, mean_gx, dw, db);
    for (int v = t + group_threads, k = 1; v < nvec; v += group_threads, ++k) {
      Vec rv{};
      if (dres) rv = dres[v];
      dh[v] = backward_vector(h[v], dy[v], w[v], rv, dres != nullptr, mean, rstd, mean_g, mean_gx, dw + k * slot_step,
                              db ? db + k * slot_step : nullptr);
    }
  }
  __syncthreads();
  // Partial row of this block: the groups' accumulators summed in order, column by column.
  for (int c = threadIdx.x; c < a.C; c += blockDim.x) {
    const int s = accumulator_slot<kVec>(c / kVec, c % kVec);
    A wsum = 0, bsum = 0;
    for (int g = 0; g < groups; ++g) {
      wsum += accumulators[g * slots + s];
      if (bias) bsum += accumulators[(groups + g) * slots + s];
    }
    const int64_t out = int64_t(blockIdx.x) * a.C + c;
    a.dw_partial[out] = wsum;
    if (bias) a.db_partial[out] = bsum;
  }
}

// Copies one vector from global to shared memory: asynchronously (cp.async, 16 bytes, no
// registers held) when it is 16 bytes, else through a register.
template <typename Vec>
__device__ __forceinline__ void stage_vector(Vec* dst, const Vec* src) {
  if constexpr (sizeof(Vec) == 16) {
    const auto address = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(address), "l"(src) : "memory");
  } else {
    *dst = *src;
  }
}

__device__ __forceinline__ void commit_stage() { asm volatile("cp.async.commit_group;" ::: "memory"); }

// Waits until this thread's stage committed before the latest one has landed.
__device__ __forceinline__ void wait_previous_stage() {
  static_assert(kStages == 2, "the stages alternate: the one being read and the one loading");
  asm volatile("cp.async.wait_group 1;" ::: "memory");
}

__device__ __forceinline__ void wait_all_stages() { asm volatile("cp.async.wait_group 0;" ::: "memory"); }

// Shared-memory bytes of one row group of norm_backward_staged_kernel (a multiple of 16): its
// ring of stages, reused at the end for its column sums.
__host__ __device__ inline int64_t staged_group_bytes(int arrays, int64_t nvec, int64_t vec_bytes, int64_t slots,
                                                      int64_t acc_bytes, bool bias) {
  const int64_t ring = kStages * arrays * nvec * vec_bytes, sums = slots * acc_bytes * (bias ? 2 : 1);
  return ((ring > sums ? ring : sums) + 15) / 16 * 16;
}

// dxhat = dy * w; layer norm: dh = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) + dres,
// RMS norm: dh = rstd (dxhat - xhat mean(dxhat xhat)) + dres.
// Row group g of block b takes rows b * groups + g, then every (gridDim.x * groups)-th row;
// groups never wait for each other inside the loop. Each group copies its next row (h, dL_dy,
// dL_dresidual_out) into one of two shared-memory stages with cp.async while it works on the
// current one, so loads stay in flight through the row sums, the reduction and the writes,
// without registers to hold them. A thread copies and reads only its own vectors
// (t + k * group_threads, at most kMaxVectors of them), so no barrier guards the stages.
// Column sums accumulate in registers and go through shared memory, in group order, into the
// block's partial row at the end.
template <typename T, int kVec, int kMaxVectors, bool kRms>
__global__ void __launch_bounds__(kStagedThreads / kMaxVectors)
    norm_backward_staged_kernel(NormBackwardArgs<T> a, int warps_per_row) {
  using A = acc_t<T>;
  using Vec = PackedVec<T, kVec>;
  const int nvec = static_cast<int>(a.C / kVec);
  const int group_threads = 32 * warps_per_row, groups = blockDim.x / group_threads;
  const int group = threadIdx.x / group_threads, t = threadIdx.x % group_threads;
  const bool bias = a.db_partial != nullptr;
  const int arrays = a.dres ? 3 : 2;  // h, dL_dy[, dL_dresidual_out]
  const int slots = (nvec + 31) / 32 * 32 * kVec;
  const int64_t group_bytes = staged_group_bytes(arrays, nvec, sizeof(Vec), slots, sizeof(A), bias);
  unsigned char* group_smem = norm_smem + group * group_bytes;
  Vec* ring = reinterpret_cast<Vec*>(group_smem);  // [kStages][arrays][nvec]
  A* scratch = reinterpret_cast<A*>(norm_smem + groups * group_bytes) + group * 4 * warps_per_row;
  const Vec* w = reinterpret_cast<const Vec*>(a.weight);
  Vec wt[kMaxVectors];
  A dw[kMaxVectors][kVec] = {}, db[kMaxVectors][kVec] = {};
#pragma unroll
  for (int k = 0; k < kMaxVectors; ++k)
    if (t + k * group_threads < nvec) wt[k] = w[t + k * group_threads];

  const int64_t row_stride = int64_t(gridDim.x) * groups, first = int64_t(blockIdx.x) * groups + group;
  auto issue = [&](int64_t row, int stage_index) {  // `row` (if any) into stage `stage_index`
    if (row < a.R) {
      Vec* stage = ring + stage_index * arrays * nvec;
      const int64_t base = row * a.C;
#pragma unroll
      for (int k = 0; k < kMaxVectors; ++k) {
        const int v = t + k * group_threads;
        if (v < nvec) {
          stage_vector(stage + v, reinterpret_cast<const Vec*>(a.h + base) + v);
          stage_vector(stage + nvec + v, reinterpret_cast<const Vec*>(a.dy + base) + v);
          if (a.dres) stage_vector(stage + 2 * nvec + v, reinterpret_cast<const Vec*>(a.dres + base) + v);
        }
      }
    }
    commit_stage();  // empty past the last row: keeps one group per row
  };
  issue(first, 0);
  int parity = 0, stage_index = 0;  // stage_index: the stage of `row`
  for (int64_t row = first; row < a.R; row += row_stride, stage_index ^= 1) {
    issue(row + row_stride, stage_index ^ 1);  // the previous row's stage, which this thread is done with
    const A mean = kRms ? A(0) : a.mean[row], rstd = a.rstd[row];
    wait_previous_stage();
    const Vec* stage = ring + stage_index * arrays * nvec;
    A sum_g = 0, sum_gx = 0;
#pragma unroll
    for (int k = 0; k < kMaxVectors; ++k) {
      const int v = t + k * group_threads;
      if (v < nvec) add_row_sums(stage[v], stage[nvec + v], wt[k], mean, rstd, sum_g, sum_gx);
    }
    row_group_sum2(sum_g, sum_gx, scratch, warps_per_row, group, parity);
    parity ^= 1;
    const A mean_g = kRms ? A(0) : sum_g / A(a.C), mean_gx = sum_gx / A(a.C);
    Vec* dh = reinterpret_cast<Vec*>(a.dh + row * a.C);
#pragma unroll
    for (int k = 0; k < kMaxVectors; ++k) {
      const int v = t + k * group_threads;
      if (v < nvec) {
        const Vec hv = stage[v], dyv = stage[nvec + v];
        const Vec rv = a.dres ? stage[2 * nvec + v] : Vec{};
        Vec out;
#pragma unroll
        for (int j = 0; j < kVec; ++j) {
          const A xhat = (load(hv.v[j]) - mean) * rstd, dyj = load(dyv.v[j]);
          const A through_residual = a.dres ? load(rv.v[j]) : A(0);
          out.v[j] = store<T>(rstd * (dyj * load(wt[k].v[j]) - mean_g - xhat * mean_gx) + through_residual);
          dw[k][j] += dyj * xhat;
          if (bias) db[k][j] += dyj;
        }
        dh[v] = out;
      }
    }
  }
  // Every group is done with its stages: reuse them for the column sums.
  wait_all_stages();
  __syncthreads();
  A* sums = reinterpret_cast<A*>(group_smem);  // [slots] for dw, then [slots] for db
#pragma unroll
  for (int k = 0; k < kMaxVectors; ++k) {
    const int v = t + k * group_threads;
    if (v < nvec) {
#pragma unroll
      for (int j = 0; j < kVec; ++j) {
        sums[accumulator_slot<kVec>(v, j)] = dw[k][j];
        if (bias) sums[slots + accumulator_slot<kVec>(v, j)] = db[k][j];
      }
    }
  }
  __syncthreads();
  for (int c = threadIdx.x; c < a.C; c += blockDim.x) {
    const int s = accumulator_slot<kVec>(c / kVec, c % kVec);
    A wsum = 0, bsum = 0;
    for (int g = 0; g < groups; ++g) {
      const A* group_sums = reinterpret_cast<const A*>(norm_smem + g * group_bytes);
      wsum += group_sums[s];
      if (bias) bsum += group_sums[slots + s];
    }
    const int64_t out = int64_t(blockIdx.x) * a.C + c;
    a.dw_partial[out] = wsum;
    if (bias) a.db_partial[out] = bsum;
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

// Runs `launch` (a backward kernel of G blocks writing G partial rows) with partial buffers
// [G, C] in `a`, then sums the partials column by column into dL_dweight (and dL_dbias).
template <typename T, typename Launch>
void with_partials(NormBackwardArgs<T> a, T* dweight, T* dbias, int64_t G, int device, cudaStream_t stream,
                   const Launch& launch) {
  using A = acc_t<T>;
  const Device dev = Device::cuda(device);
  const DType stats = std::is_same_v<A, double> ? DType::F64 : DType::F32;
  Tensor dw_partial = Tensor::empty(Shape{G, a.C}, stats, dev);
  Tensor db_partial = dbias ? Tensor::empty(Shape{G, a.C}, stats, dev) : Tensor();
  a.dw_partial = ptr<A>(dw_partial);
  a.db_partial = ptr<A>(db_partial);
  if (G > 0) launch(a);
  const dim3 block(32, 32), grid(static_cast<unsigned>((a.C + 31) / 32), dbias ? 2 : 1);
  column_sum_kernel<T><<<grid, block, 0, stream>>>(a.dw_partial, a.db_partial, G, a.C, dweight, dbias);
  cuda::check_launch("norm column_sum_kernel", stream);
}

// Blocks of `kernel` (threads, bytes of shared memory) resident on the whole GPU at once, or
// 0 when one does not fit an SM.
template <typename Kernel>
int64_t resident_blocks(Kernel kernel, int threads, size_t bytes, int device) {
  int sms = 0, per_sm = 0;
  TS_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  TS_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, bytes));
  return int64_t(sms) * per_sm;
}

// The staged backward, when a row group of at most 32 warps covers the row with 1, 2 or 4
// vectors a lane and one group's stages fit shared memory; returns false otherwise. Measured
// on an H100 (GPT-2 [16384, 768] layer norm, Llama [8192, 2048] RMS norm): row groups of at
// most 4 warps and blocks of half the most threads were fastest (two blocks an SM).
template <typename T, bool kRms>
bool launch_norm_backward_staged(const NormBackwardArgs<T>& a, T* dweight, T* dbias, bool vec, int device,
                                 cudaStream_t stream, const char* name) {
  using A = acc_t<T>;
  const int vec_width = vec ? cuda::kVec16<T> : 1;
  const int64_t nvec = a.C / vec_width;
  // A row of at most 128 vectors goes to one warp (no cross-warp reduction; GPT-2's C = 768:
  // 70.8% of copy bandwidth against 69.2% with 3 warps); longer rows to groups of up to 4 warps.
  int max_vectors = 1;
  if (nvec <= 32 * 4) {
    while (int64_t(32) * max_vectors < nvec) max_vectors *= 2;
  } else {
    while (max_vectors < 4 && nvec > int64_t(32) * 4 * max_vectors) max_vectors *= 2;
  }
  const int64_t warps = (nvec + 32 * max_vectors - 1) / (32 * max_vectors);
  if (warps > 32) return false;
  const int group_threads = static_cast<int>(32 * warps), block_limit = kStagedThreads / max_vectors;
  if (group_threads > block_limit) return false;
  int groups = std::max(1, block_limit / 2 / group_threads);
  if (warps > 1) groups = std::min(groups, 15);  // named barriers 1..15
  int optin = 0;
  TS_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const int64_t slots = (nvec + 31) / 32 * 32 * vec_width;
  const int64_t group_bytes =
      staged_group_bytes(a.dres ? 3 : 2, nvec, int64_t(vec_width) * sizeof(T), slots, sizeof(A), dbias != nullptr) +
      int64_t(4) * warps * sizeof(A);
  const int64_t limit = int64_t(optin) - 1024;  // allow_shared_memory's limit
  groups = static_cast<int>(std::min<int64_t>(groups, limit / group_bytes));
  if (groups < 1) return false;
  const size_t bytes = static_cast<size_t>(groups * group_bytes);
  const int threads = group_threads * groups;
  auto kernel = max_vectors == 1   ? norm_backward_staged_kernel<T, cuda::kVec16<T>, 1, kRms>
                : max_vectors == 2 ? norm_backward_staged_kernel<T, cuda::kVec16<T>, 2, kRms>
                                   : norm_backward_staged_kernel<T, cuda::kVec16<T>, 4, kRms>;
  if (!vec)
    kernel = max_vectors == 1   ? norm_backward_staged_kernel<T, 1, 1, kRms>
             : max_vectors == 2 ? norm_backward_staged_kernel<T, 1, 2, kRms>
                                : norm_backward_staged_kernel<T, 1, 4, kRms>;
  allow_shared_memory(kernel, bytes, device, name, a.C);
  const int64_t resident = resident_blocks(kernel, threads, bytes, device);
  if (resident < 1) return false;
  const int64_t G = std::min<int64_t>((a.R + groups - 1) / groups, resident);
  with_partials(a, dweight, dbias, G, device, stream, [&](const NormBackwardArgs<T>& args) {
    kernel<<<static_cast<unsigned>(G), threads, bytes, stream>>>(args, static_cast<int>(warps));
    cuda::check_launch(name, stream);
  });
  return true;
}

// The wide-row backward: row groups of up to kWideThreads threads, as many a block as fit.
template <typename T, bool kRms>
void launch_norm_backward_wide(const NormBackwardArgs<T>& a, T* dweight, T* dbias, bool vec, int device,
                               cudaStream_t stream, const char* name) {
  using A = acc_t<T>;
  const int vec_width = vec ? cuda::kVec16<T> : 1;
  const int64_t nvec = a.C / vec_width;
  const int warps = static_cast<int>(std::min<int64_t>(kWideThreads / 32, (nvec + 31) / 32));
  int groups = kWideThreads / (32 * warps);
  if (warps > 1) groups = std::min(groups, 15);  // named barriers 1..15
  int optin = 0;
  TS_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const int64_t slots = (nvec + 31) / 32 * 32 * vec_width;
  auto bytes_for = [&](int g) { return static_cast<size_t>(g) * sizeof(A) * (slots * (dbias ? 2 : 1) + 4 * warps); };
  const size_t limit = static_cast<size_t>(optin) - 1024;  // allow_shared_memory's limit
  while (groups > 1 && bytes_for(groups) > limit) --groups;
  const size_t bytes = bytes_for(groups);
  const int threads = 32 * warps * groups;
  auto kernel = vec ? norm_backward_wide_kernel<T, cuda::kVec16<T>, kRms> : norm_backward_wide_kernel<T, 1, kRms>;
  allow_shared_memory(kernel, bytes, device, name, a.C);
  const int64_t resident = resident_blocks(kernel, threads, bytes, device);
  TS_CHECK(resident > 0, name, ": a backward block of ", threads, " threads and ", bytes,
           " bytes of shared memory does not fit an SM (C = ", a.C, ")");
  const int64_t G = std::min<int64_t>((a.R + groups - 1) / groups, resident);
  with_partials(a, dweight, dbias, G, device, stream, [&](const NormBackwardArgs<T>& args) {
    kernel<<<static_cast<unsigned>(G), threads, bytes, stream>>>(args, warps);
    cuda::check_launch(name, stream);
  });
}

// Backward kernel (staged where it fits, else wide-row), then the column sums of its partials
// into dL_dweight (and dL_dbias).
template <typename T, bool kRms>
void launch_norm_backward(const NormBackwardArgs<T>& a, T* dweight, T* dbias, int device, cudaStream_t stream,
                          const char* name) {
  if (a.C == 0) return;
  TS_CHECK(a.C <= INT32_MAX / 2, name, ": rows of C = ", a.C, " columns are wider than the ", INT32_MAX / 2,
           " the backward kernels index; split the normalized dimension");
  const bool vec = can_vectorize<T>(a.C, {a.h, a.weight, a.dy, a.dres, a.dh});
  if (!launch_norm_backward_staged<T, kRms>(a, dweight, dbias, vec, device, stream, name))
    launch_norm_backward_wide<T, kRms>(a, dweight, dbias, vec, device, stream, name);
}

}  // namespace

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
