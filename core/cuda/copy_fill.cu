// Copies (device<->device with dtype conversion and strides, host<->device through pinned
// staging) and fill. Conversions follow the CPU reference: 16-bit floats are produced from f32
// (so f64 -> bf16 rounds through f32 exactly as on the CPU), floats -> integers truncate,
// anything -> bool is "!= 0".
#include <cstring>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/kernel_utils.cuh"
#include "core/cuda/vectorized.cuh"

namespace tessera {

namespace {

using cuda::StridedDesc;

template <typename Fn>
void dispatch_cuda_all(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::F32: fn(float{}); return;
    case DType::F64: fn(double{}); return;
    case DType::BF16: fn(__nv_bfloat16{}); return;
    case DType::F16: fn(__half{}); return;
    case DType::I32: fn(int32_t{}); return;
    case DType::I64: fn(int64_t{}); return;
    case DType::Bool: fn(bool{}); return;
  }
  TS_CHECK(false, "unknown dtype");
}

template <typename S>
__device__ __forceinline__ double to_double(S v) {
  if constexpr (std::is_same_v<S, __nv_bfloat16>) {
    return __bfloat162float(v);
  } else if constexpr (std::is_same_v<S, __half>) {
    return __half2float(v);
  } else {
    return static_cast<double>(v);
  }
}

template <typename D>
__device__ __forceinline__ D from_double(double v) {
  if constexpr (std::is_same_v<D, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<D, __half>) {
    return __float2half_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<D, bool>) {
    return v != 0.0;
  } else {
    return static_cast<D>(v);
  }
}

template <typename S, typename D>
__global__ void convert_kernel(const S* src, StridedDesc src_desc, D* dst, StridedDesc dst_desc, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    S v = src[src_desc.offset(i)];
    if constexpr (std::is_integral_v<S> && std::is_integral_v<D>) {
      dst[dst_desc.offset(i)] = std::is_same_v<D, bool> ? D(v != 0) : static_cast<D>(v);  // exact for int64
    } else {
      dst[dst_desc.offset(i)] = from_double<D>(to_double(v));
    }
  }
}

// Same-dtype copy between strided views whose last dim is contiguous on both sides (the
// q/k/v slices of a fused projection, cat into a slice): one thread per W-element vector, the
// row's offsets computed once per vector from descriptors of the leading dims (the generic
// convert_kernel divides per element and ran at a tenth of copy bandwidth on an H100).
template <int W, typename T>
__global__ void strided_rows_kernel(const T* src, StridedDesc src_rows, T* dst, StridedDesc dst_rows, int64_t rows,
                                    int64_t row_len) {
  const int64_t vectors_per_row = row_len / W, total = rows * vectors_per_row;
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < total; g += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = g / vectors_per_row, col = (g - row * vectors_per_row) * W;
    cuda::store_vector<W>(dst + dst_rows.offset(row) + col, cuda::load_vector<W>(src + src_rows.offset(row) + col));
  }
}

template <typename D>
__global__ void fill_kernel(D* dst, StridedDesc desc, double value, int64_t n) {
  D v = from_double<D>(value);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    dst[desc.offset(i)] = v;
  }
}

constexpr int kThreads = 256;

unsigned int blocks_for(int64_t n) {
  unsigned int blocks = cuda::grid_for(n, kThreads, 4);
  return blocks > 65535u * 8u ? 65535u * 8u : blocks;  // grid-stride loops cover the rest
}

size_t nbytes_of(const Tensor& t) { return static_cast<size_t>(t.numel()) * dtype_size(t.dtype()); }

// The leading dims of `t` (all but the last), for strided_rows_kernel.
StridedDesc row_desc(const Tensor& t) {
  StridedDesc desc = cuda::strided_desc(t);
  desc.ndim -= 1;
  return desc;
}

// Elements per vector (16 bytes down to 1 element) that every row start of both views and the
// row length allow; 0 when the last dim is not contiguous on both sides.
template <typename T>
int row_vector_width(const Tensor& src, const Tensor& dst) {
  const Shape &ss = src.strides(), &ds = dst.strides();
  if (src.dim() < 2 || ss.back() != 1 || ds.back() != 1) return 0;
  for (int w = cuda::kVec16<T>; w > 1; w /= 2) {
    bool fits = src.size(-1) % w == 0 && cuda::is_aligned(src.data_ptr(), w * sizeof(T)) &&
                cuda::is_aligned(dst.data_ptr(), w * sizeof(T));
    for (size_t d = 0; fits && d + 1 < ss.size(); ++d) fits = ss[d] % w == 0 && ds[d] % w == 0;
    if (fits) return w;
  }
  return 1;
}

// Same dtype, last dim contiguous on both sides: strided_rows_kernel; false otherwise.
bool copy_rows(const Tensor& src, const Tensor& dst, cudaStream_t stream) {
  bool done = false;
  dispatch_cuda_all(src.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const int w = row_vector_width<T>(src, dst);
    if (w == 0) return;
    const int64_t row_len = src.size(-1), rows = src.numel() / row_len;
    auto launch = [&](auto width) {
      constexpr int W = decltype(width)::value;
      strided_rows_kernel<W><<<blocks_for(rows * (row_len / W)), kThreads, 0, stream>>>(
          static_cast<const T*>(src.data_ptr()), row_desc(src), static_cast<T*>(dst.data_ptr()), row_desc(dst), rows,
          row_len);
    };
    if constexpr (cuda::kVec16<T> >= 8) {
      if (w == 8) launch(std::integral_constant<int, 8>{});
    }
    if constexpr (cuda::kVec16<T> >= 4) {
      if (w == 4) launch(std::integral_constant<int, 4>{});
    }
    if constexpr (cuda::kVec16<T> >= 2) {
      if (w == 2) launch(std::integral_constant<int, 2>{});
    }
    if (w == 1) launch(std::integral_constant<int, 1>{});
    cuda::check_launch("strided_rows_kernel", stream);
    done = true;
  });
  return done;
}

}  // namespace

// Both tensors on this device.
static void device_copy(const Tensor& src, const Tensor& dst, cudaStream_t stream) {
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    TS_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), nbytes_of(src), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  if (src.dtype() == dst.dtype() && copy_rows(src, dst, stream)) return;
  int64_t n = src.numel();
  StridedDesc sd = cuda::strided_desc(src), dd = cuda::strided_desc(dst);
  dispatch_cuda_all(src.dtype(), [&](auto s) {
    using S = decltype(s);
    dispatch_cuda_all(dst.dtype(), [&](auto d) {
      using D = decltype(d);
      convert_kernel<S, D><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const S*>(src.data_ptr()), sd,
                                                                    static_cast<D*>(dst.data_ptr()), dd, n);
    });
  });
  cuda::check_launch("convert_kernel", stream);
}

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  TS_CHECK(src.shape() == dst.shape(), "copy: source ", src.shape(), " and destination ", dst.shape(),
           " shapes differ");
  if (src.numel() == 0) return;
  const Device here = device();
  CudaDeviceGuard guard(device_);
  cudaStream_t s = stream();
  if (src.device() == here && dst.device() == here) {
    device_copy(src, dst, s);
  } else if (dst.device() == here && src.device().is_cpu()) {
    // Host -> device: contiguous host copy, pinned staging, async copy, convert on the device.
    Tensor host = src.is_contiguous() ? src : src.contiguous();
    std::shared_ptr<Storage> staging = pinned_.allocate(nbytes_of(host));
    std::memcpy(staging->data(), host.data_ptr(), nbytes_of(host));
    bool direct = dst.is_contiguous() && dst.dtype() == src.dtype();
    Tensor landing = direct ? dst : Tensor::empty(src.shape(), src.dtype(), here);
    TS_CUDA_CHECK(cudaMemcpyAsync(landing.data_ptr(), staging->data(), nbytes_of(host), cudaMemcpyHostToDevice, s));
    if (!direct) device_copy(landing, dst, s);
    // The staging buffer returns to the pool when this function ends: wait for the copy.
    stream_.synchronize();
  } else if (src.device() == here && dst.device().is_cpu()) {
    // Device -> host: convert on the device into dst's dtype, async copy to pinned, then host.
    bool direct = src.is_contiguous() && src.dtype() == dst.dtype();
    Tensor packed = direct ? src : Tensor::empty(src.shape(), dst.dtype(), here);
    if (!direct) device_copy(src, packed, s);
    std::shared_ptr<Storage> staging = pinned_.allocate(nbytes_of(packed));
    TS_CUDA_CHECK(cudaMemcpyAsync(staging->data(), packed.data_ptr(), nbytes_of(packed), cudaMemcpyDeviceToHost, s));
    stream_.synchronize();
    Tensor staged = make_tensor(staging, dst.shape(), contiguous_strides(dst.shape()), 0, dst.dtype());
    backend_for(Device::cpu()).copy(staged, dst);
  } else if (src.device().is_cuda() && dst.device() == here) {
    // Another GPU -> this GPU: make the source contiguous there, copy peer to peer, convert here.
    Tensor packed = src.is_contiguous() ? src : src.contiguous();
    cuda_backend(src.device().index).synchronize();
    Tensor landing = Tensor::empty(src.shape(), src.dtype(), here);
    TS_CUDA_CHECK(cudaMemcpyPeerAsync(landing.data_ptr(), device_, packed.data_ptr(), src.device().index,
                                      nbytes_of(packed), s));
    device_copy(landing, dst, s);
  } else {
    TS_CHECK(false, "copy from ", src.device(), " to ", dst.device(), " cannot run on the backend of ", here);
  }
}

void CudaBackend::fill(const Tensor& dst, double value) {
  cuda::check_on_device("fill", "dst", dst, device_);
  int64_t n = dst.numel();
  if (n == 0) return;
  CudaDeviceGuard guard(device_);
  StridedDesc desc = cuda::strided_desc(dst);
  dispatch_cuda_all(dst.dtype(), [&](auto d) {
    using D = decltype(d);
    fill_kernel<D><<<blocks_for(n), kThreads, 0, stream()>>>(static_cast<D*>(dst.data_ptr()), desc, value, n);
  });
  cuda::check_launch("fill_kernel", stream());
}

}  // namespace tessera
