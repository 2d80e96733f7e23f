// Facts about the CUDA runtime and the visible GPUs, for `tessera info` and device checks.
// Declared for every build; in a build without CUDA the count is 0.
#pragma once

#include <string>

namespace tessera {

int cuda_device_count();
// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)" for device `index`.
std::string cuda_device_description(int index);

}  // namespace tessera
