// Facts about the CUDA runtime and the visible GPUs, for `tessera info` and device checks.
// Declared for every build; in a build without CUDA the count is 0.
#pragma once

#include <string>

namespace tessera {

int cuda_device_count();
// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)" for device `index`.
std::string cuda_device_description(int index);
// Makes GPU `index` this thread's current device (torch.cuda.set_device): what libraries that
// launch on the current device (cuDNN, NCCL's and cuBLAS's internal allocations) then use. A
// rank calls it once for its GPU, before any CUDA work, so that it also creates no context on
// device 0. A build without CUDA refuses.
void make_cuda_device_current(int index);

}  // namespace tessera
