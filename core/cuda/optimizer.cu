// CUDA multi-tensor optimizer kernels: AdamW (f32 master weights and moments, the bf16/f16
// model copy written in the same pass), the sum of squares behind the global gradient norm,
// and fp16 loss scaling's unscale-and-check. Reference: core/cpu/optimizer_kernels.cpp.
//
// Many tensors, one launch: the host packs each tensor's pointers, size and first chunk into a
// small table, copies it to the device on the stream (a pageable cudaMemcpyAsync, which stages
// the bytes before returning, so no host sync) and launches one block per chunk of kChunk
// elements; a block finds its tensor by binary search over the table. Tensors whose pointers
// allow it move 4 (AdamW) or 16 bytes (the others) per access; sizes need not divide the vector.
// Tensors with different dtypes go in separate launches (one per dtype combination).
// sum_squares is deterministic: a fixed grid of kSumBlocks blocks takes fixed chunks, each
// block writes one partial sum (f32 accumulation), and one block adds the partials in f64.
#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/kernel_utils.cuh"
#include "core/kernel_args.h"

namespace tessera {
namespace {

using cuda::acc_t;
using cuda::block_reduce;
using cuda::load;
using cuda::PackedVec;
using cuda::store;
using cuda::SumOp;

constexpr int64_t kChunk = 16384;  // elements per block
constexpr int kThreads = 256;
constexpr int64_t kSumBlocks = 1024;

// One tensor of a multi-tensor launch; first_chunk counts from the start of its launch.
struct TensorEntry {
  void* data;
  int64_t numel;
  int64_t first_chunk;
  int64_t vectorized;  // data allows 16-byte accesses
};

struct AdamWEntry {
  float* master;
  const void* grad;
  float* exp_avg;
  float* exp_avg_sq;
  void* model_copy;  // nullptr: none
  int64_t numel;
  int64_t first_chunk;
  int64_t vectorized;  // every pointer allows 4-element accesses
};

// The entry whose chunks hold `chunk` (entries are in chunk order; empty tensors are left out).
template <typename Entry>
__device__ const Entry& entry_of(const Entry* table, int entries, int64_t chunk) {
  int lo = 0, hi = entries - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (table[mid].first_chunk <= chunk) lo = mid;
    else hi = mid - 1;
  }
  return table[lo];
}

template <typename A>
__device__ __forceinline__ bool finite(A x) {
  if constexpr (std::is_same_v<A, double>) {
    return (__double_as_longlong(x) & 0x7ff0000000000000LL) != 0x7ff0000000000000LL;
  } else {
    return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u;
  }
}

struct AdamWStep {
  float lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps, weight_decay, bias1, bias2, grad_scale;
};

__device__ __forceinline__ void adamw_element(float& p, float& m, float& v, float grad, const AdamWStep& s) {
  const float g = grad / s.grad_scale;
  m = s.beta1 * m + s.one_minus_beta1 * g;
  v = s.beta2 * v + s.one_minus_beta2 * g * g;
  const float m_hat = m / s.bias1, v_hat = v / s.bias2;
  p = p - s.lr * (m_hat / (sqrtf(v_hat) + s.eps) + s.weight_decay * p);
}

template <typename G, typename M>
__global__ void adamw_kernel(const AdamWEntry* table, int entries, AdamWStep s) {
  const AdamWEntry e = entry_of(table, entries, blockIdx.x);  // a copy: stores may not alias it
  const int64_t begin = (blockIdx.x - e.first_chunk) * kChunk, end = min(begin + kChunk, e.numel);
  const G* grad = static_cast<const G*>(e.grad);
  M* copy = static_cast<M*>(e.model_copy);
  for (int64_t i = begin + threadIdx.x * 4; i < end; i += int64_t(blockDim.x) * 4) {
    if (e.vectorized && i + 4 <= end) {
      auto p = *reinterpret_cast<PackedVec<float, 4>*>(e.master + i);
      auto m = *reinterpret_cast<PackedVec<float, 4>*>(e.exp_avg + i);
      auto v = *reinterpret_cast<PackedVec<float, 4>*>(e.exp_avg_sq + i);
      const auto g = *reinterpret_cast<const PackedVec<G, 4>*>(grad + i);
#pragma unroll
      for (int j = 0; j < 4; ++j) adamw_element(p.v[j], m.v[j], v.v[j], load(g.v[j]), s);
      *reinterpret_cast<PackedVec<float, 4>*>(e.master + i) = p;
      *reinterpret_cast<PackedVec<float, 4>*>(e.exp_avg + i) = m;
      *reinterpret_cast<PackedVec<float, 4>*>(e.exp_avg_sq + i) = v;
      if (copy) {
        PackedVec<M, 4> c;
#pragma unroll
        for (int j = 0; j < 4; ++j) c.v[j] = store<M>(p.v[j]);
        *reinterpret_cast<PackedVec<M, 4>*>(copy + i) = c;
      }
    } else {
      for (int64_t k = i; k < i + 4 && k < end; ++k) {
        float p = e.master[k], m = e.exp_avg[k], v = e.exp_avg_sq[k];
        adamw_element(p, m, v, load(grad[k]), s);
        e.master[k] = p;
        e.exp_avg[k] = m;
        e.exp_avg_sq[k] = v;
        if (copy) copy[k] = store<M>(p);
      }
    }
  }
}

// Calls fn(x) for every element of the block's chunk, 16 bytes at a time where allowed;
// kWrite: fn may change x, which is stored back.
template <typename T, bool kWrite, typename Fn>
__device__ __forceinline__ void for_chunk(const TensorEntry e, int64_t chunk, Fn&& fn) {
  constexpr int kVec = cuda::kVec16<T>;
  const int64_t begin = (chunk - e.first_chunk) * kChunk, end = min(begin + kChunk, e.numel);
  T* data = static_cast<T*>(e.data);
  for (int64_t i = begin + threadIdx.x * kVec; i < end; i += int64_t(blockDim.x) * kVec) {
    if (e.vectorized && i + kVec <= end) {
      auto x = *reinterpret_cast<PackedVec<T, kVec>*>(data + i);
#pragma unroll
      for (int j = 0; j < kVec; ++j) fn(x.v[j]);
      if constexpr (kWrite) *reinterpret_cast<PackedVec<T, kVec>*>(data + i) = x;
    } else {
      for (int64_t k = i; k < i + kVec && k < end; ++k) {
        T x = data[k];
        fn(x);
        if constexpr (kWrite) data[k] = x;
      }
    }
  }
}

template <typename T>
__global__ void sum_squares_kernel(const TensorEntry* table, int entries, int64_t chunks, double* partial) {
  using A = acc_t<T>;
  A local = 0;
  for (int64_t chunk = blockIdx.x; chunk < chunks; chunk += gridDim.x) {
    for_chunk<T, false>(entry_of(table, entries, chunk), chunk, [&](T& x) { local += load(x) * load(x); });
  }
  const A total = block_reduce(local, SumOp{}, A(0));
  if (threadIdx.x == 0) partial[blockIdx.x] = double(total);
}

__global__ void sum_partials_kernel(const double* partial, int64_t n, float* out) {
  double local = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) local += partial[i];
  const double total = block_reduce(local, SumOp{}, 0.0);
  if (threadIdx.x == 0) out[0] = float(total);
}

template <typename T>
__global__ void unscale_kernel(const TensorEntry* table, int entries, acc_t<T> inv_scale, float* found_inf) {
  bool bad = false;
  for_chunk<T, true>(entry_of(table, entries, blockIdx.x), blockIdx.x, [&](T& x) {
    x = store<T>(load(x) * inv_scale);
    bad |= !finite(load(x));
  });
  if (__syncthreads_or(bad) && threadIdx.x == 0) *found_inf = 1.0f;
}

// ---- host side ----

void check_arg(const std::string& kernel, const char* name, const Tensor& t, DType dtype, const Shape& shape,
               int device) {
  cuda::check_on_device(kernel.c_str(), name, t, device);
  TS_CHECK(t.dtype() == dtype && t.shape() == shape, kernel, ": expected ", name, " ", dtype_name(dtype), " ",
           shape_str(shape), ", got ", dtype_name(t.dtype()), " ", shape_str(t.shape()));
  TS_CHECK(t.is_contiguous(), kernel, ": ", name, " ", shape_str(t.shape()), " must be contiguous, strides ",
           shape_str(t.strides()));
}

int64_t chunks_of(int64_t numel) { return (numel + kChunk - 1) / kChunk; }

// Copies a host table into a device buffer on `stream` (stream-ordered; the buffer goes back
// to the caching allocator when the caller drops it, after which only later work can reuse it).
template <typename Entry>
Tensor upload(const std::vector<Entry>& table, Device device, cudaStream_t stream) {
  const size_t bytes = table.size() * sizeof(Entry);
  Tensor buffer = Tensor::empty(Shape{static_cast<int64_t>((bytes + 7) / 8)}, DType::I64, device);
  TS_CUDA_CHECK(cudaMemcpyAsync(buffer.data_ptr(), table.data(), bytes, cudaMemcpyHostToDevice, stream));
  return buffer;
}

// Tensors of one dtype, laid out for one launch.
struct Group {
  std::vector<TensorEntry> entries;
  int64_t chunks = 0;
};

// Checks the tensors (float dtypes, contiguous, on this device) and groups them by dtype.
std::map<DType, Group> group_by_dtype(const char* kernel, const std::vector<Tensor>& tensors, int device) {
  std::map<DType, Group> groups;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Tensor& t = tensors[i];
    const std::string name = "tensor " + std::to_string(i);
    TS_CHECK(t.defined(), kernel, ": ", name, " is undefined");
    check_arg(kernel, name.c_str(), t, t.dtype(), t.shape(), device);
    TS_CHECK(is_floating(t.dtype()), kernel, ": expected a floating dtype (f32, f64, bf16, f16), got ",
             dtype_name(t.dtype()));
    if (t.numel() == 0) continue;
    Group& g = groups[t.dtype()];
    g.entries.push_back({t.data_ptr(), t.numel(), g.chunks, cuda::is_aligned(t.data_ptr(), 16) ? 1 : 0});
    g.chunks += chunks_of(t.numel());
  }
  for (const auto& [dtype, g] : groups)
    TS_CHECK(g.chunks <= INT32_MAX, kernel, ": ", g.chunks, " chunks of ", kChunk, " elements exceed the grid limit");
  return groups;
}

void check_adamw_param(const AdamWParam& p, size_t i, int device) {
  const std::string at = "adamw: param " + std::to_string(i);
  TS_CHECK(p.master.defined(), at, ": master is undefined");
  const Shape& shape = p.master.shape();
  check_arg(at, "master", p.master, DType::F32, shape, device);
  check_arg(at, "exp_avg", p.exp_avg, DType::F32, shape, device);
  check_arg(at, "exp_avg_sq", p.exp_avg_sq, DType::F32, shape, device);
  TS_CHECK(p.grad.defined() &&
               (p.grad.dtype() == DType::F32 || p.grad.dtype() == DType::BF16 || p.grad.dtype() == DType::F16),
           at, ": grad must be f32, bf16 or f16, got ", p.grad.defined() ? dtype_name(p.grad.dtype()) : "undefined");
  check_arg(at, "grad", p.grad, p.grad.dtype(), shape, device);
  if (p.model_copy.defined()) {
    TS_CHECK(p.model_copy.dtype() == DType::BF16 || p.model_copy.dtype() == DType::F16, at,
             ": model_copy must be bf16 or f16, got ", dtype_name(p.model_copy.dtype()));
    check_arg(at, "model_copy", p.model_copy, p.model_copy.dtype(), shape, device);
  }
}

template <typename Fn>
void dispatch_grad(DType dtype, Fn&& fn) {
  if (dtype == DType::F32) fn(float{});
  else if (dtype == DType::BF16) fn(__nv_bfloat16{});
  else fn(__half{});
}

}  // namespace

void CudaBackend::adamw(const std::vector<AdamWParam>& params, const AdamWHyper& hyper) {
  check_adamw_hyper(hyper);
  for (size_t i = 0; i < params.size(); ++i) check_adamw_param(params[i], i, device_);
  // Launch groups by (grad dtype, model copy dtype); tensors without a copy join the bf16 one.
  std::map<std::pair<DType, DType>, std::vector<AdamWEntry>> groups;
  std::map<std::pair<DType, DType>, int64_t> group_chunks;
  for (const AdamWParam& p : params) {
    const int64_t n = p.master.numel();
    if (n == 0) continue;
    const DType copy = p.model_copy.defined() ? p.model_copy.dtype() : DType::BF16;
    const size_t g4 = 4 * dtype_size(p.grad.dtype()), c4 = 4 * dtype_size(copy);
    const bool vectorized = cuda::is_aligned(p.master.data_ptr(), 16) && cuda::is_aligned(p.exp_avg.data_ptr(), 16) &&
                            cuda::is_aligned(p.exp_avg_sq.data_ptr(), 16) && cuda::is_aligned(p.grad.data_ptr(), g4) &&
                            (!p.model_copy.defined() || cuda::is_aligned(p.model_copy.data_ptr(), c4));
    const auto key = std::make_pair(p.grad.dtype(), copy);
    int64_t& chunks = group_chunks[key];
    groups[key].push_back({static_cast<float*>(p.master.data_ptr()), p.grad.data_ptr(),
                           static_cast<float*>(p.exp_avg.data_ptr()), static_cast<float*>(p.exp_avg_sq.data_ptr()),
                           p.model_copy.defined() ? p.model_copy.data_ptr() : nullptr, n, chunks,
                           vectorized ? 1 : 0});
    chunks += chunks_of(n);
    TS_CHECK(chunks <= INT32_MAX, "adamw: ", chunks, " chunks of ", kChunk, " elements exceed the grid limit");
  }
  if (groups.empty()) return;
  CudaDeviceGuard guard(device_);
  const double bias1 = 1.0 - std::pow(hyper.beta1, double(hyper.step));
  const double bias2 = 1.0 - std::pow(hyper.beta2, double(hyper.step));
  const AdamWStep step{float(hyper.lr),  float(hyper.beta1),        float(hyper.beta2), float(1.0 - hyper.beta1),
                       float(1.0 - hyper.beta2), float(hyper.eps), float(hyper.weight_decay), float(bias1),
                       float(bias2),     float(hyper.grad_scale)};
  std::vector<AdamWEntry> all;
  for (const auto& [key, entries] : groups) all.insert(all.end(), entries.begin(), entries.end());
  const Tensor table = upload(all, device(), stream());
  const AdamWEntry* base = static_cast<const AdamWEntry*>(table.data_ptr());
  size_t offset = 0;
  for (const auto& [key, entries] : groups) {
    const AdamWEntry* group_table = base + offset;
    const int count = static_cast<int>(entries.size());
    const unsigned blocks = static_cast<unsigned>(group_chunks[key]);
    dispatch_grad(key.first, [&](auto grad_tag) {
      using G = decltype(grad_tag);
      if (key.second == DType::BF16) adamw_kernel<G, __nv_bfloat16><<<blocks, kThreads, 0, stream()>>>(group_table, count, step);
      else adamw_kernel<G, __half><<<blocks, kThreads, 0, stream()>>>(group_table, count, step);
    });
    cuda::check_launch("adamw_kernel", stream());
    offset += entries.size();
  }
}

void CudaBackend::sum_squares(const std::vector<Tensor>& tensors, const Tensor& out) {
  check_arg("sum_squares", "out", out, DType::F32, {1}, device_);
  const std::map<DType, Group> groups = group_by_dtype("sum_squares", tensors, device_);
  CudaDeviceGuard guard(device_);
  std::vector<TensorEntry> all;
  int64_t partials = 0;
  for (const auto& [dtype, g] : groups) {
    all.insert(all.end(), g.entries.begin(), g.entries.end());
    partials += std::min(g.chunks, kSumBlocks);
  }
  Tensor table = all.empty() ? Tensor() : upload(all, device(), stream());
  Tensor partial = Tensor::empty(Shape{std::max<int64_t>(partials, 1)}, DType::F64, device());
  size_t offset = 0;
  int64_t written = 0;
  for (const auto& [dtype, g] : groups) {
    const TensorEntry* group_table = static_cast<const TensorEntry*>(table.data_ptr()) + offset;
    const int64_t blocks = std::min(g.chunks, kSumBlocks);
    double* group_partial = static_cast<double*>(partial.data_ptr()) + written;
    cuda::dispatch_cuda_float(dtype, "sum_squares", [&](auto tag) {
      using T = decltype(tag);
      sum_squares_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream()>>>(
          group_table, static_cast<int>(g.entries.size()), g.chunks, group_partial);
    });
    cuda::check_launch("sum_squares_kernel", stream());
    offset += g.entries.size();
    written += blocks;
  }
  sum_partials_kernel<<<1, 1024, 0, stream()>>>(static_cast<const double*>(partial.data_ptr()), partials,
                                                static_cast<float*>(out.data_ptr()));
  cuda::check_launch("sum_partials_kernel", stream());
}

void CudaBackend::unscale_and_check_finite(const std::vector<Tensor>& tensors, double inv_scale,
                                           const Tensor& found_inf) {
  check_arg("unscale_and_check_finite", "found_inf", found_inf, DType::F32, {1}, device_);
  const std::map<DType, Group> groups = group_by_dtype("unscale_and_check_finite", tensors, device_);
  if (groups.empty()) return;
  CudaDeviceGuard guard(device_);
  std::vector<TensorEntry> all;
  for (const auto& [dtype, g] : groups) all.insert(all.end(), g.entries.begin(), g.entries.end());
  const Tensor table = upload(all, device(), stream());
  size_t offset = 0;
  for (const auto& [dtype, g] : groups) {
    const TensorEntry* group_table = static_cast<const TensorEntry*>(table.data_ptr()) + offset;
    cuda::dispatch_cuda_float(dtype, "unscale_and_check_finite", [&](auto tag) {
      using T = decltype(tag);
      unscale_kernel<T><<<static_cast<unsigned>(g.chunks), kThreads, 0, stream()>>>(
          group_table, static_cast<int>(g.entries.size()), acc_t<T>(inv_scale), static_cast<float*>(found_inf.data_ptr()));
    });
    cuda::check_launch("unscale_kernel", stream());
    offset += g.entries.size();
  }
}

}  // namespace tessera
