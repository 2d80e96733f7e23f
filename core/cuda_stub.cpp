// CUDA runtime queries for builds without the CUDA backend: no GPUs.
#ifndef TESSERA_WITH_CUDA
#include "core/check.h"
#include "core/cuda/runtime.h"

namespace tessera {

int cuda_device_count() { return 0; }

std::string cuda_device_description(int index) {
  TS_CHECK(false, "cuda_device_description(", index, "): this build has no CUDA backend");
  return {};
}

}  // namespace tessera
#endif
