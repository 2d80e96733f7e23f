// CUDA runtime queries. Kernels arrive with the CUDA backend; this file proves the CUDA
// toolchain path builds from day one.
#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"

namespace tessera {

int cuda_device_count() {
  int count = 0;
  // No driver or no GPU is a normal answer (0 devices), not an error.
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

std::string cuda_device_description(int index) {
  cudaDeviceProp prop{};
  TS_CUDA_CHECK(cudaGetDeviceProperties(&prop, index));
  double gib = static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0);
  return detail::concat(prop.name, " (sm_", prop.major, prop.minor, ", ", static_cast<int>(gib * 10) / 10.0, " GiB)");
}

void make_cuda_device_current(int index) {
  const int count = cuda_device_count();
  TS_CHECK(index >= 0 && index < count, "device cuda:", index, " does not exist: ", count, " GPU(s) visible");
  TS_CUDA_CHECK(cudaSetDevice(index));
}

}  // namespace tessera
