#include "core/backend.h"

#include "core/cpu/cpu_backend.h"

namespace tessera {

Backend& backend_for(Device device) {
  if (device.is_cpu()) {
    static CpuBackend cpu;  // stateless apart from its allocator; shared by all threads
    return cpu;
  }
  TS_CHECK(false, "no kernels for ", device, " in this build: the CUDA backend is not implemented yet; "
           "run on device cpu");
  return backend_for(Device::cpu());  // unreachable
}

}  // namespace tessera
