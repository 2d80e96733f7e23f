// CUDA runtime queries for builds without the CUDA backend: no GPUs.
#ifndef TESSERA_WITH_CUDA
#include "core/check.h"
#include "core/cuda/runtime.h"
#include "core/device_graph.h"

namespace tessera {

int cuda_device_count() { return 0; }

std::string cuda_device_description(int index) {
  TS_CHECK(false, "cuda_device_description(", index, "): this build has no CUDA backend");
  return {};
}

void make_cuda_device_current(int index) {
  TS_CHECK(false, "make_cuda_device_current(", index, "): this build has no CUDA backend");
}

std::unique_ptr<DeviceGraph> capture_device_graph(Device device, const std::function<void()>&) {
  TS_CHECK(false, "capture_device_graph on ", device.str(), ": this build has no CUDA backend (graphs capture CUDA work)");
  return nullptr;
}

}  // namespace tessera
#endif
