// CUDA embedding: out[N, C] = weight[ids[N], :] and its backward, which adds row n of dL_dout
// into row ids[n] of dL_dweight; same checks and errors as core/cpu/embedding.cpp.
//
// Id check: the ids live on the GPU, so the first kernel of a call records the first position
// whose id lies outside [0, V), and the launcher reads it back at the end of the call
// (core/cuda/device_error.cuh): a bad id is a tessera::Error at the call, naming position and
// id like the CPU, at the price of one host wait per call. In the forward that wait is nearly
// free: the ids arrive just before by a host->device copy, which already waits for the stream.
// The backward's adding kernels read the flag on the device and do nothing once it is set,
// so a bad id leaves dL_dweight untouched.
//
// Backward, sorted path (deterministic = true, and always for 16-bit weights): token positions
// are sorted by id (CUB's stable radix sort), so each id's rows form one run in position
// order. The sorted rows are cut into chunks of kChunk; a block per (chunk, column tile) sums
// each run piece in order in acc_t; a run inside one chunk is added to its weight row at
// once, a run crossing chunks leaves its pieces in a partial buffer that the block of the
// chunk where the run starts adds up in chunk order. Every weight row has one writer and a
// fixed order of additions: the same bits on every run, and 16-bit weights are rounded once
// (their atomics would round at each add: measured 8% off on a run of 2048 rows).
// Backward, deterministic = false with f32/f64 weights: one atomicAdd per element; the order,
// and so the last bits, vary between runs.
#include <algorithm>
#include <cstdint>
#include <cub/device/device_radix_sort.cuh>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/device_error.cuh"
#include "core/cuda/kernel_utils.cuh"
#include "core/cuda/vectorized.cuh"
#include "core/kernel_args.h"

namespace tessera {

namespace {

using cuda::acc_t;

constexpr int kThreads = 128;
constexpr int kRowBatch = 8;  // rows (or partial sums) loaded before they are added: memory parallelism

unsigned int grid_for_tokens(int64_t tokens) {
  return static_cast<unsigned int>(std::clamp<int64_t>(tokens, 1, int64_t(1) << 30));
}

template <typename T, typename I, int W>
__global__ void embedding_kernel(const T* weight, const I* ids, T* out, int64_t tokens, int64_t vocab, int64_t channels,
                                 unsigned long long* bad) {
  for (int64_t n = blockIdx.x; n < tokens; n += gridDim.x) {
    const int64_t id = static_cast<int64_t>(ids[n]);
    if (id < 0 || id >= vocab) {
      if (threadIdx.x == 0) cuda::report_bad_index(bad, n);
      continue;
    }
    const T* src = weight + id * channels;
    T* dst = out + n * channels;
    for (int64_t c = int64_t(threadIdx.x) * W; c < channels; c += int64_t(blockDim.x) * W)
      cuda::store_vector<W>(dst + c, cuda::load_vector<W>(src + c));
  }
}

template <typename I>
__global__ void check_ids_kernel(const I* ids, int64_t tokens, int64_t vocab, unsigned long long* bad) {
  for (int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; n < tokens; n += int64_t(gridDim.x) * blockDim.x) {
    const int64_t id = static_cast<int64_t>(ids[n]);
    if (id < 0 || id >= vocab) cuda::report_bad_index(bad, n);
  }
}

template <typename T, typename I>
__global__ void embedding_backward_atomic_kernel(const I* ids, const T* dL_dout, T* dL_dweight, int64_t tokens,
                                                 int64_t channels, const unsigned long long* bad) {
  if (*bad != cuda::kNoBadIndex) return;
  for (int64_t n = blockIdx.x; n < tokens; n += gridDim.x) {
    T* dst = dL_dweight + static_cast<int64_t>(ids[n]) * channels;
    const T* src = dL_dout + n * channels;
    for (int64_t c = threadIdx.x; c < channels; c += blockDim.x) atomicAdd(dst + c, src[c]);
  }
}

// Sort input and id check in one pass: key = id, value = token position.
template <typename I>
__global__ void sort_input_kernel(const I* ids, uint32_t* keys, int32_t* positions, int64_t tokens, int64_t vocab,
                                  unsigned long long* bad) {
  for (int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; n < tokens; n += int64_t(gridDim.x) * blockDim.x) {
    const int64_t id = static_cast<int64_t>(ids[n]);
    if (id < 0 || id >= vocab) cuda::report_bad_index(bad, n);
    keys[n] = static_cast<uint32_t>(id);
    positions[n] = static_cast<int32_t>(n);
  }
}

constexpr int64_t kChunk = 64;  // sorted rows per block of the sorted backward

// Block (chunk, column tile), W columns per thread: sums each run piece of sorted rows
// [chunk * kChunk, + kChunk) in order. A whole run goes straight into its weight row; the
// piece that continues from the previous chunk goes to partial slot 0, the one that continues
// into the next chunk to slot 1 (a chunk inside one run: slot 0).
template <typename T, int W>
__global__ void embedding_backward_chunks_kernel(const uint32_t* keys, const int32_t* positions, int64_t tokens,
                                                 const T* dL_dout, T* dL_dweight, acc_t<T>* partial, int64_t channels,
                                                 const unsigned long long* bad) {
  using A = acc_t<T>;
  if (*bad != cuda::kNoBadIndex) return;
  const int64_t c0 = (int64_t(blockIdx.y) * blockDim.x + threadIdx.x) * W;
  if (c0 >= channels) return;
  const int64_t chunk = blockIdx.x, lo = chunk * kChunk, hi = lo + kChunk < tokens ? lo + kChunk : tokens;
  const bool from_previous = lo > 0 && keys[lo - 1] == keys[lo];
  const bool into_next = hi < tokens && keys[hi] == keys[hi - 1];
  A acc[W];
  uint32_t run_id = keys[lo];
  int64_t run_begin = lo;
  auto flush = [&](int64_t run_end) {
    const bool first = run_begin == lo && from_previous, last = run_end == hi && into_next;
    if (first || last) {
      cuda::PackedVec<A, W> p;
#pragma unroll
      for (int k = 0; k < W; ++k) p.v[k] = acc[k];
      cuda::store_vector<W>(partial + (chunk * 2 + (first ? 0 : 1)) * channels + c0, p);
    } else {
      T* dst = dL_dweight + int64_t(run_id) * channels + c0;
      cuda::PackedVec<T, W> w = cuda::load_vector<W>(dst);
#pragma unroll
      for (int k = 0; k < W; ++k) w.v[k] = cuda::store<T>(cuda::load(w.v[k]) + acc[k]);
      cuda::store_vector<W>(dst, w);
    }
#pragma unroll
    for (int k = 0; k < W; ++k) acc[k] = A(0);
  };
#pragma unroll
  for (int k = 0; k < W; ++k) acc[k] = A(0);
  for (int64_t j = lo; j < hi; j += kRowBatch) {
    const int rows = hi - j < kRowBatch ? static_cast<int>(hi - j) : kRowBatch;
    uint32_t key[kRowBatch];
    cuda::PackedVec<T, W> v[kRowBatch];
#pragma unroll
    for (int u = 0; u < kRowBatch; ++u) {
      if (u < rows) {
        key[u] = keys[j + u];
        v[u] = cuda::load_vector<W>(dL_dout + int64_t(positions[j + u]) * channels + c0);
      }
    }
#pragma unroll
    for (int u = 0; u < kRowBatch; ++u) {
      if (u < rows) {
        if (key[u] != run_id) {
          flush(j + u);
          run_id = key[u];
          run_begin = j + u;
        }
#pragma unroll
        for (int k = 0; k < W; ++k) acc[k] += cuda::load(v[u].v[k]);
      }
    }
  }
  flush(hi);
}

// Block (chunk, column tile): if the chunk's last run starts here and continues into later
// chunks, adds its pieces in chunk order and the sum into the weight row.
template <typename T, int W>
__global__ void embedding_backward_spans_kernel(const uint32_t* keys, int64_t tokens, const acc_t<T>* partial,
                                                T* dL_dweight, int64_t channels, const unsigned long long* bad) {
  using A = acc_t<T>;
  if (*bad != cuda::kNoBadIndex) return;
  const int64_t chunk = blockIdx.x, lo = chunk * kChunk, hi = lo + kChunk;
  if (hi >= tokens) return;
  const uint32_t id = keys[hi - 1];
  if (keys[hi] != id) return;                // the last run ends in this chunk
  if (lo > 0 && keys[lo - 1] == id) return;  // it began in an earlier chunk
  const int64_t c0 = (int64_t(blockIdx.y) * blockDim.x + threadIdx.x) * W;
  if (c0 >= channels) return;
  int64_t end = hi, past = tokens;  // the run ends at the first key after hi that differs
  while (end < past) {
    int64_t mid = (end + past) / 2;
    if (keys[mid] == id)
      end = mid + 1;
    else
      past = mid;
  }
  const int64_t last_chunk = (end - 1) / kChunk;
  cuda::PackedVec<A, W> sum = cuda::load_vector<W>(partial + (chunk * 2 + 1) * channels + c0);
  for (int64_t c = chunk + 1; c <= last_chunk; c += kRowBatch) {
    cuda::PackedVec<A, W> p[kRowBatch];
#pragma unroll
    for (int u = 0; u < kRowBatch; ++u) {
      if (c + u <= last_chunk) p[u] = cuda::load_vector<W>(partial + (c + u) * 2 * channels + c0);
    }
#pragma unroll
    for (int u = 0; u < kRowBatch; ++u) {
      if (c + u <= last_chunk) {
#pragma unroll
        for (int k = 0; k < W; ++k) sum.v[k] += p[u].v[k];
      }
    }
  }
  T* dst = dL_dweight + int64_t(id) * channels + c0;
  cuda::PackedVec<T, W> w = cuda::load_vector<W>(dst);
#pragma unroll
  for (int k = 0; k < W; ++k) w.v[k] = cuda::store<T>(cuda::load(w.v[k]) + sum.v[k]);
  cuda::store_vector<W>(dst, w);
}

// The device, then the checks every backend shares; `rows` is out or dL_dout.
void check_embedding(const char* op, const Tensor& weight, const Tensor& ids, const Tensor& rows, const char* rows_name,
                     int device) {
  cuda::check_on_device(op, "weight", weight, device);
  cuda::check_on_device(op, "ids", ids, device);
  cuda::check_on_device(op, rows_name, rows, device);
  check_embedding_shapes(op, weight, ids, rows, rows_name);
}

// Calls fn(I{}) for the index dtype of ids.
template <typename Fn>
void dispatch_ids(const char* op, DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::I32:
      fn(int32_t{});
      return;
    case DType::I64:
      fn(int64_t{});
      return;
    default:
      break;
  }
  TS_CHECK(false, op, ": expected an index dtype (i32, i64), got ", dtype_name(dtype));
}

// Throws the CPU's error for the first bad id the check recorded, if any (waits for the stream).
void throw_if_bad_id(const char* op, const cuda::DeviceIndexCheck& check, const Tensor& ids, int64_t vocab) {
  int64_t position = check.first_bad(std::string(op) + ": a token id outside [0, V = " + std::to_string(vocab) + ")");
  if (position < 0) return;
  int64_t id = ids.flatten().narrow(0, position, 1).to_vector<int64_t>()[0];
  TS_CHECK(false, op, ": id ", id, " at position ", position, " is outside [0, V = ", vocab, ")");
}

// Raw device bytes from the caching allocator (CUB's temporary storage, the sort buffers).
Tensor scratch(size_t bytes, Device device) {
  return Tensor::empty({static_cast<int64_t>((std::max<size_t>(bytes, 8) + 7) / 8)}, DType::I64, device);
}

template <typename T, int W>
void launch_sorted_backward(const uint32_t* keys, const int32_t* positions, int64_t tokens, const Tensor& dL_dout,
                            const Tensor& dL_dweight, const unsigned long long* bad, cudaStream_t s) {
  using A = acc_t<T>;
  const int64_t channels = dL_dweight.size(1), chunks = (tokens + kChunk - 1) / kChunk;
  Tensor partial =
      Tensor::empty({chunks, 2, channels}, std::is_same_v<A, double> ? DType::F64 : DType::F32, dL_dweight.device());
  auto tiles = static_cast<unsigned int>((channels + int64_t(kThreads) * W - 1) / (int64_t(kThreads) * W));
  dim3 grid(static_cast<unsigned int>(chunks), tiles);
  const T* dy = static_cast<const T*>(dL_dout.data_ptr());
  T* dw = static_cast<T*>(dL_dweight.data_ptr());
  A* pp = static_cast<A*>(partial.data_ptr());
  embedding_backward_chunks_kernel<T, W><<<grid, kThreads, 0, s>>>(keys, positions, tokens, dy, dw, pp, channels, bad);
  cuda::check_launch("embedding_backward_chunks_kernel", s);
  embedding_backward_spans_kernel<T, W><<<grid, kThreads, 0, s>>>(keys, tokens, pp, dw, channels, bad);
  cuda::check_launch("embedding_backward_spans_kernel", s);
}

template <typename T, typename I>
void sorted_backward(const Tensor& ids, const Tensor& dL_dout, const Tensor& dL_dweight, unsigned long long* bad,
                     cudaStream_t s) {
  const int64_t tokens = ids.numel(), vocab = dL_dweight.size(0), channels = dL_dweight.size(1);
  TS_CHECK(tokens <= INT32_MAX && vocab <= int64_t(UINT32_MAX), "embedding_backward_accumulate: the sorted path ",
           "takes at most 2^31 - 1 ids and 2^32 rows, got ", tokens, " ids and V = ", vocab);
  const int n = static_cast<int>(tokens);
  Tensor buffers = scratch(sizeof(uint32_t) * 4 * size_t(n), ids.device());
  auto* keys = static_cast<uint32_t*>(buffers.data_ptr());
  uint32_t* sorted_keys = keys + n;
  auto* positions = reinterpret_cast<int32_t*>(sorted_keys + n);
  int32_t* sorted_positions = positions + n;
  sort_input_kernel<<<grid_for_tokens((tokens + 255) / 256), 256, 0, s>>>(static_cast<const I*>(ids.data_ptr()), keys,
                                                                          positions, tokens, vocab, bad);
  cuda::check_launch("sort_input_kernel", s);

  int end_bit = 1;  // keys below V need this many bits (bad ids sort anywhere: nothing is added then)
  while (end_bit < 32 && (uint64_t(1) << end_bit) < static_cast<uint64_t>(vocab)) ++end_bit;
  size_t temp_bytes = 0;
  TS_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys, sorted_keys, positions, sorted_positions, n,
                                                0, end_bit, s));
  Tensor temp = scratch(temp_bytes, ids.device());
  TS_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data_ptr(), temp_bytes, keys, sorted_keys, positions,
                                                sorted_positions, n, 0, end_bit, s));

  constexpr int N = cuda::kVec16<T>;
  bool vectorize =
      channels % N == 0 && cuda::is_aligned(dL_dout.data_ptr(), 16) && cuda::is_aligned(dL_dweight.data_ptr(), 16);
  if (vectorize) {
    launch_sorted_backward<T, N>(sorted_keys, sorted_positions, tokens, dL_dout, dL_dweight, bad, s);
  } else {
    launch_sorted_backward<T, 1>(sorted_keys, sorted_positions, tokens, dL_dout, dL_dweight, bad, s);
  }
}

}  // namespace

void CudaBackend::embedding(const Tensor& weight, const Tensor& ids, const Tensor& out) {
  check_embedding("embedding", weight, ids, out, "out", device_);
  const int64_t tokens = ids.numel(), vocab = weight.size(0), channels = weight.size(1);
  CudaDeviceGuard guard(device_);
  cudaStream_t s = stream();
  cuda::dispatch_cuda_float(weight.dtype(), "embedding", [&](auto wt) {
    using T = decltype(wt);
    dispatch_ids("embedding", ids.dtype(), [&](auto it) {
      using I = decltype(it);
      if (tokens == 0) return;
      cuda::DeviceIndexCheck check(device(), s);
      constexpr int N = cuda::kVec16<T>;
      const T* w = static_cast<const T*>(weight.data_ptr());
      const I* id = static_cast<const I*>(ids.data_ptr());
      T* y = static_cast<T*>(out.data_ptr());
      if (channels % N == 0 && cuda::is_aligned(w, 16) && cuda::is_aligned(y, 16)) {
        embedding_kernel<T, I, N>
            <<<grid_for_tokens(tokens), kThreads, 0, s>>>(w, id, y, tokens, vocab, channels, check.slot());
      } else {
        embedding_kernel<T, I, 1>
            <<<grid_for_tokens(tokens), kThreads, 0, s>>>(w, id, y, tokens, vocab, channels, check.slot());
      }
      cuda::check_launch("embedding_kernel", s);
      throw_if_bad_id("embedding", check, ids, vocab);
    });
  });
}

void CudaBackend::embedding_backward_accumulate(const Tensor& ids, const Tensor& dL_dout, const Tensor& dL_dweight,
                                                bool deterministic) {
  const char* op = "embedding_backward_accumulate";
  check_embedding(op, dL_dweight, ids, dL_dout, "dL_dout", device_);
  const int64_t tokens = ids.numel(), vocab = dL_dweight.size(0), channels = dL_dweight.size(1);
  CudaDeviceGuard guard(device_);
  cudaStream_t s = stream();
  cuda::dispatch_cuda_float(dL_dweight.dtype(), op, [&](auto wt) {
    using T = decltype(wt);
    dispatch_ids(op, ids.dtype(), [&](auto it) {
      using I = decltype(it);
      if (tokens == 0) return;
      cuda::DeviceIndexCheck check(device(), s);
      const I* id = static_cast<const I*>(ids.data_ptr());
      if ((deterministic || sizeof(T) == 2) && channels > 0) {
        sorted_backward<T, I>(ids, dL_dout, dL_dweight, check.slot(), s);
      } else {
        check_ids_kernel<<<grid_for_tokens((tokens + 255) / 256), 256, 0, s>>>(id, tokens, vocab, check.slot());
        cuda::check_launch("check_ids_kernel", s);
        if constexpr (sizeof(T) > 2) {
          embedding_backward_atomic_kernel<<<grid_for_tokens(tokens), kThreads, 0, s>>>(
              id, static_cast<const T*>(dL_dout.data_ptr()), static_cast<T*>(dL_dweight.data_ptr()), tokens, channels,
              check.slot());
          cuda::check_launch("embedding_backward_atomic_kernel", s);
        }
      }
      throw_if_bad_id(op, check, ids, vocab);
    });
  });
}

}  // namespace tessera
