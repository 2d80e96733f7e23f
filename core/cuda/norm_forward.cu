// CUDA layer norm and RMS norm forward over the last dim of x [R, C], fused with the residual
// add of a pre-norm block (contract in core/backend.h, reference math in core/cpu/norm.cpp;
// the backward is in norm_backward.cu).
//
// One block per row. The block reads the row once, in 16-byte vectors when C and every pointer
// allow it, rounds h = x + residual to the activation dtype exactly as the CPU does (and writes
// it to residual_out), keeps h in shared memory as acc_t, and takes the mean and the variance in
// two passes over that copy (no E[x^2] - E[x]^2 cancellation). Shared-memory layout: element j
// of vector v sits at [j * nvec + v], so the thread that owns vector v reads only its own
// values, without bank conflicts.
#include "core/cuda/norm_common.cuh"

namespace tessera {
namespace {

using namespace norm;

constexpr int kNormForwardThreads = 1024;   // most threads of a forward block (one row)

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

}  // namespace tessera
