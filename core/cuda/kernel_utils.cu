// Host-side helpers of kernel_utils.cuh (in a .cu file because that header holds device code).
#include <cstdlib>

#include "core/cuda/kernel_utils.cuh"

namespace tessera {

namespace cuda {

StridedDesc strided_desc(const Tensor& t) {
  TS_CHECK(t.dim() <= kMaxDims, "CUDA kernels take at most ", kMaxDims, " dims, got shape ", t.shape());
  StridedDesc desc;
  desc.ndim = static_cast<int>(t.dim());
  for (int d = 0; d < desc.ndim; ++d) {
    desc.sizes[d] = t.shape()[static_cast<size_t>(d)];
    desc.strides[d] = t.strides()[static_cast<size_t>(d)];
  }
  return desc;
}

void check_launch(const char* kernel, cudaStream_t stream) {
  cudaError_t status = cudaGetLastError();
  TS_CHECK(status == cudaSuccess, "launch of ", kernel, " failed: ", cudaGetErrorString(status));
  static const bool sync_debug = [] {
    const char* flag = std::getenv("TESSERA_CUDA_SYNC_DEBUG");
    return flag && flag[0] == '1';
  }();
  if (sync_debug) {
    status = cudaStreamSynchronize(stream);
    TS_CHECK(status == cudaSuccess, "kernel ", kernel, " failed: ", cudaGetErrorString(status));
  }
}

void check_on_device(const char* kernel, const char* name, const Tensor& t, int device) {
  TS_CHECK(t.defined(), kernel, ": ", name, " is undefined");
  TS_CHECK(t.device() == Device::cuda(device), kernel, ": ", name, " ", t.shape(), " is on ", t.device(),
           ", expected cuda:", device);
}

}  // namespace cuda

}  // namespace tessera
