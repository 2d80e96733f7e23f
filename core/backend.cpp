#include "core/backend.h"

#include "core/cpu/cpu_backend.h"
#ifdef TESSERA_WITH_CUDA
#include "core/cuda/cuda_backend.h"
#endif

namespace tessera {

Backend& backend_for(Device device) {
  if (device.is_cpu()) {
    static CpuBackend cpu;  // stateless apart from its allocator; shared by all threads
    return cpu;
  }
#ifdef TESSERA_WITH_CUDA
  return cuda_backend(device.index);
#else
  TS_CHECK(false, "no kernels for ", device, ": this build has no CUDA backend (configure with -DTESSERA_CUDA=ON "
           "on a machine with the CUDA toolkit), or run on device cpu");
  return backend_for(Device::cpu());  // unreachable
#endif
}

}  // namespace tessera
