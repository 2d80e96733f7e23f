// CUDA SwiGLU (forward and backward, contiguous operands or one packed [gate | up] projection) and axpy (y += alpha x, x contiguous,
// y contiguous or strided, mixed dtypes), with the formulas of core/cpu/elementwise.cpp.
#include "core/cuda/elementwise_common.cuh"

namespace tessera {

namespace {

using namespace elementwise;

template <typename T>
struct SwigluValue {
  __device__ T operator()(T gate, T up) const {
    acc_t<T> g = load(gate);
    return store<T>(g * d_sigmoid(g) * load(up));
  }
};

template <typename T>
struct SwigluBackwardMap {
  const T* gate;
  const T* up;
  const T* dL_dout;
  T* dL_dgate;
  T* dL_dup;

  template <int W>
  __device__ void apply(int64_t i) const {
    using A = acc_t<T>;
    PackedVec<T, W> g = load_vector<W>(gate + i), u = load_vector<W>(up + i), dy = load_vector<W>(dL_dout + i);
    PackedVec<T, W> dg, du;
#pragma unroll
    for (int k = 0; k < W; ++k) {
      A gv = load(g.v[k]), uv = load(u.v[k]), dyv = load(dy.v[k]);
      A s = d_sigmoid(gv);
      dg.v[k] = store<T>(dyv * uv * s * (A(1) + gv * (A(1) - s)));
      du.v[k] = store<T>(dyv * gv * s);
    }
    store_vector<W>(dL_dgate + i, dg);
    store_vector<W>(dL_dup + i, du);
  }
};

// SwiGLU over a packed h [R, 2F] (gate then up per row): element i of out [R, F] reads h's row
// i / F at columns i % F and F + i % F. Vectors of W never cross a row (the launcher vectorizes
// only when F is a multiple of the vector width).
template <typename T>
struct SwigluPackedMap {
  const T* h;
  T* out;
  int64_t width;  // F

  template <int W>
  __device__ void apply(int64_t i) const {
    const int64_t row = i / width, col = i - row * width;
    const T* gate = h + row * 2 * width + col;
    PackedVec<T, W> g = load_vector<W>(gate), u = load_vector<W>(gate + width), y;
#pragma unroll
    for (int k = 0; k < W; ++k) y.v[k] = SwigluValue<T>{}(g.v[k], u.v[k]);
    store_vector<W>(out + i, y);
  }
};

template <typename T>
struct SwigluPackedBackwardMap {
  const T* h;
  const T* dL_dout;
  T* dL_dh;
  int64_t width;

  template <int W>
  __device__ void apply(int64_t i) const {
    using A = acc_t<T>;
    const int64_t row = i / width, col = i - row * width, at = row * 2 * width + col;
    PackedVec<T, W> g = load_vector<W>(h + at), u = load_vector<W>(h + at + width), dy = load_vector<W>(dL_dout + i);
    PackedVec<T, W> dg, du;
#pragma unroll
    for (int k = 0; k < W; ++k) {
      A gv = load(g.v[k]), uv = load(u.v[k]), dyv = load(dy.v[k]);
      A s = d_sigmoid(gv);
      dg.v[k] = store<T>(dyv * uv * s * (A(1) + gv * (A(1) - s)));
      du.v[k] = store<T>(dyv * gv * s);
    }
    store_vector<W>(dL_dh + at, dg);
    store_vector<W>(dL_dh + at + width, du);
  }
};

// h [..., 2F] contiguous; `other` [..., other_width] contiguous with h's dtype, on the device.
int64_t check_swiglu_packed(const char* op, const Tensor& h, const char* name, const Tensor& other,
                            int64_t other_width, int device) {
  cuda::check_on_device(op, "h", h, device);
  cuda::check_on_device(op, name, other, device);
  TS_CHECK(h.dim() >= 1 && h.size(-1) % 2 == 0, op, ": h ", h.shape(), " must be [..., 2F] (gate, then up)");
  Shape want = h.shape();
  want.back() = other_width;
  TS_CHECK(other.shape() == want && other.dtype() == h.dtype() && other.is_contiguous() && h.is_contiguous(), op,
           ": expected contiguous h ", h.shape(), " and ", name, " ", want, " of h's dtype, got ", name, " ",
           other.shape(), " ", dtype_name(other.dtype()));
  return h.size(-1) / 2;
}

template <typename X, typename Y>
__device__ __forceinline__ Y axpy_value(acc_t<Y> alpha, X x, Y y) {
  using A = acc_t<Y>;
  return store<Y>(load(y) + alpha * static_cast<A>(load(x)));
}

template <typename X, typename Y>
struct AxpyMap {
  acc_t<Y> alpha;
  const X* x;
  Y* y;

  template <int W>
  __device__ void apply(int64_t i) const {
    PackedVec<X, W> vx = load_vector<W>(x + i);
    PackedVec<Y, W> vy = load_vector<W>(y + i);
#pragma unroll
    for (int k = 0; k < W; ++k) vy.v[k] = axpy_value(alpha, vx.v[k], vy.v[k]);
    store_vector<W>(y + i, vy);
  }
};

template <typename X, typename Y>
__global__ void axpy_strided_kernel(acc_t<Y> alpha, const X* x, Y* y, IndexMap<int64_t, 1> map, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[1];
    map.offsets(i, off);
    y[off[0]] = axpy_value(alpha, x[i], y[off[0]]);
  }
}

}  // namespace

void CudaBackend::axpy(double alpha, const Tensor& x, const Tensor& y) {
  cuda::check_on_device("axpy", "x", x, device_);
  cuda::check_on_device("axpy", "y", y, device_);
  TS_CHECK(x.shape() == y.shape(), "axpy: x ", shape_str(x.shape()), " and y ", shape_str(y.shape()),
           " differ in shape");
  check_contiguous("axpy", "x", x);
  int64_t n = y.numel();
  CudaDeviceGuard guard(device_);
  cudaStream_t s = stream();
  cuda::dispatch_cuda_float(x.dtype(), "axpy", [&](auto xt) {
    using X = decltype(xt);
    cuda::dispatch_cuda_float(y.dtype(), "axpy", [&](auto yt) {
      using Y = decltype(yt);
      using A = acc_t<Y>;
      if (n == 0) return;
      const X* px = static_cast<const X*>(x.data_ptr());
      Y* py = static_cast<Y*>(y.data_ptr());
      if (y.is_contiguous()) {
        constexpr int N = cuda::vector_width<X, Y>();
        bool vectorize = cuda::is_aligned(px, N * sizeof(X)) && cuda::is_aligned(py, N * sizeof(Y));
        cuda::launch_contiguous<N>("axpy", n, vectorize, AxpyMap<X, Y>{static_cast<A>(alpha), px, py}, s);
        return;
      }
      const Tensor* operands[1] = {&y};
      IndexMap<int64_t, 1> map = index_map<int64_t>(collapse_dims("axpy", operands));
      axpy_strided_kernel<<<strided_blocks(n), cuda::kElementwiseThreads, 0, s>>>(static_cast<A>(alpha), px, py, map,
                                                                                  n);
      cuda::check_launch("axpy_strided_kernel", s);
    });
  });
}

void CudaBackend::swiglu(const Tensor& gate, const Tensor& up, const Tensor& out) {
  check_elementwise("swiglu", gate, "up", up, device_);
  check_elementwise("swiglu", gate, "out", out, device_);
  if (gate.numel() == 0) return;
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(gate.dtype(), "swiglu", [&](auto t) {
    using T = decltype(t);
    run_map<2, T, T>("swiglu", SwigluValue<T>{}, gate, up, out, stream());
  });
}

void CudaBackend::swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dL_dout, const Tensor& dL_dgate,
                                  const Tensor& dL_dup) {
  check_elementwise("swiglu_backward", gate, "up", up, device_);
  check_elementwise("swiglu_backward", gate, "dL_dout", dL_dout, device_);
  check_elementwise("swiglu_backward", gate, "dL_dgate", dL_dgate, device_);
  check_elementwise("swiglu_backward", gate, "dL_dup", dL_dup, device_);
  int64_t n = gate.numel();
  if (n == 0) return;
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(gate.dtype(), "swiglu_backward", [&](auto t) {
    using T = decltype(t);
    constexpr int N = cuda::kVec16<T>;
    SwigluBackwardMap<T> map{static_cast<const T*>(gate.data_ptr()), static_cast<const T*>(up.data_ptr()),
                             static_cast<const T*>(dL_dout.data_ptr()), static_cast<T*>(dL_dgate.data_ptr()),
                             static_cast<T*>(dL_dup.data_ptr())};
    bool vectorize = true;
    for (const Tensor* t : {&gate, &up, &dL_dout, &dL_dgate, &dL_dup})
      vectorize = vectorize && cuda::is_aligned(t->data_ptr(), N * sizeof(T));
    cuda::launch_contiguous<N>("swiglu_backward", n, vectorize, map, stream());
  });
}

void CudaBackend::swiglu_packed(const Tensor& h, const Tensor& out) {
  const int64_t F = check_swiglu_packed("swiglu_packed", h, "out", out, h.dim() >= 1 ? h.size(-1) / 2 : 0, device_);
  if (out.numel() == 0) return;
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(h.dtype(), "swiglu_packed", [&](auto t) {
    using T = decltype(t);
    constexpr int N = cuda::kVec16<T>;
    const bool vectorize = F % N == 0 && cuda::is_aligned(h.data_ptr(), N * sizeof(T)) &&
                           cuda::is_aligned(out.data_ptr(), N * sizeof(T));
    SwigluPackedMap<T> map{static_cast<const T*>(h.data_ptr()), static_cast<T*>(out.data_ptr()), F};
    cuda::launch_contiguous<N>("swiglu_packed", out.numel(), vectorize, map, stream());
  });
}

void CudaBackend::swiglu_packed_backward(const Tensor& h, const Tensor& dL_dout, const Tensor& dL_dh) {
  const int64_t F =
      check_swiglu_packed("swiglu_packed_backward", h, "dL_dout", dL_dout, h.dim() >= 1 ? h.size(-1) / 2 : 0, device_);
  check_swiglu_packed("swiglu_packed_backward", h, "dL_dh", dL_dh, 2 * F, device_);
  if (dL_dout.numel() == 0) return;
  CudaDeviceGuard guard(device_);
  cuda::dispatch_cuda_float(h.dtype(), "swiglu_packed_backward", [&](auto t) {
    using T = decltype(t);
    constexpr int N = cuda::kVec16<T>;
    bool vectorize = F % N == 0;
    for (const Tensor* x : {&h, &dL_dout, &dL_dh}) vectorize = vectorize && cuda::is_aligned(x->data_ptr(), N * sizeof(T));
    SwigluPackedBackwardMap<T> map{static_cast<const T*>(h.data_ptr()), static_cast<const T*>(dL_dout.data_ptr()),
                                   static_cast<T*>(dL_dh.data_ptr()), F};
    cuda::launch_contiguous<N>("swiglu_packed_backward", dL_dout.numel(), vectorize, map, stream());
  });
}

}  // namespace tessera
