// CUDA rotary position embedding on x [B, T, H, D] with cos/sin tables [T, D/2] (f32, f64 for
// f64 x), pairs (i, i + D/2) in the Llama / NeoX "rotate half" layout; inverse rotates by
// -angle (the backward). Reference: core/cpu/rope.cpp. A thread rotates kVec consecutive
// pairs of one head, with 16-byte loads of x when D/2 and the pointers allow it; it reads both
// halves before writing, so out may be x itself.
#include <algorithm>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/kernel_utils.cuh"

namespace tessera {
namespace {

using cuda::acc_t;
using cuda::load;
using cuda::PackedVec;
using cuda::store;

template <typename T, int kVec>
__global__ void rope_kernel(const T* x, const acc_t<T>* cos, const acc_t<T>* sin, T* out, int64_t groups,
                            int64_t T_len, int64_t H, int64_t half, acc_t<T> sign) {
  using A = acc_t<T>;
  const int64_t per_head = half / kVec;
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups; g += int64_t(gridDim.x) * blockDim.x) {
    const int64_t head = g / per_head, i = (g % per_head) * kVec, t = (head / H) % T_len;
    const T* xr = x + head * 2 * half;
    T* outr = out + head * 2 * half;
    const auto x1 = *reinterpret_cast<const PackedVec<T, kVec>*>(xr + i);
    const auto x2 = *reinterpret_cast<const PackedVec<T, kVec>*>(xr + half + i);
    const auto c = *reinterpret_cast<const PackedVec<A, kVec>*>(cos + t * half + i);
    const auto s = *reinterpret_cast<const PackedVec<A, kVec>*>(sin + t * half + i);
    PackedVec<T, kVec> o1, o2;
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      const A a1 = load(x1.v[j]), a2 = load(x2.v[j]), sj = sign * s.v[j];
      o1.v[j] = store<T>(a1 * c.v[j] - a2 * sj);
      o2.v[j] = store<T>(a2 * c.v[j] + a1 * sj);
    }
    *reinterpret_cast<PackedVec<T, kVec>*>(outr + i) = o1;
    *reinterpret_cast<PackedVec<T, kVec>*>(outr + half + i) = o2;
  }
}

void check_arg(const char* name, const Tensor& t, DType dtype, const Shape& shape, int device) {
  cuda::check_on_device("rope", name, t, device);
  TS_CHECK(t.dtype() == dtype && t.shape() == shape, "rope: expected ", name, " ", dtype_name(dtype), " ",
           shape_str(shape), ", got ", dtype_name(t.dtype()), " ", shape_str(t.shape()));
  TS_CHECK(t.is_contiguous(), "rope: ", name, " ", shape_str(t.shape()), " must be contiguous, strides ",
           shape_str(t.strides()));
}

}  // namespace

void CudaBackend::rope(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse, const Tensor& out) {
  TS_CHECK(x.defined() && x.dim() == 4, "rope: expected x [B, T, H, D], got ",
           x.defined() ? shape_str(x.shape()) : "an undefined tensor");
  const int64_t B = x.size(0), T = x.size(1), H = x.size(2), D = x.size(3), half = D / 2;
  TS_CHECK(D % 2 == 0, "rope: head dim D must be even, got x ", shape_str(x.shape()));
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(x.dtype(), "rope", [&](auto tag) {
    using S = decltype(tag);
    using A = acc_t<S>;
    const DType table = std::is_same_v<A, double> ? DType::F64 : DType::F32;
    check_arg("x", x, x.dtype(), Shape{B, T, H, D}, device_);
    check_arg("cos", cos, table, Shape{T, half}, device_);
    check_arg("sin", sin, table, Shape{T, half}, device_);
    check_arg("out", out, x.dtype(), Shape{B, T, H, D}, device_);
    const int64_t pairs = B * T * H * half;
    if (pairs == 0) return;
    constexpr int kVec = cuda::kVec16<S>;
    const bool vec = half % kVec == 0 && cuda::is_aligned(x.data_ptr(), 16) && cuda::is_aligned(out.data_ptr(), 16) &&
                     cuda::is_aligned(cos.data_ptr(), kVec * sizeof(A)) && cuda::is_aligned(sin.data_ptr(), kVec * sizeof(A));
    const int vec_width = vec ? kVec : 1;
    const int64_t groups = pairs / vec_width;
    const unsigned blocks = std::min(cuda::grid_for(groups, 256), 65535u * 16u);  // grid-stride beyond
    const A sign = inverse ? A(-1) : A(1);
    auto args = [&](auto kernel) {
      kernel<<<blocks, 256, 0, stream()>>>(static_cast<const S*>(x.data_ptr()), static_cast<const A*>(cos.data_ptr()),
                                           static_cast<const A*>(sin.data_ptr()), static_cast<S*>(out.data_ptr()),
                                           groups, T, H, half, sign);
    };
    if (vec) args(rope_kernel<S, kVec>);
    else args(rope_kernel<S, 1>);
    cuda::check_launch("rope_kernel", stream());
  });
}

}  // namespace tessera
