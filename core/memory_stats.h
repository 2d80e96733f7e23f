// Memory use of a device for logs and reports: the caching allocator's counters on a GPU, the
// process's resident set on the host.
#pragma once

#include <cstddef>

#include "core/check.h"
#include "core/device.h"

namespace tessera {

struct MemoryStats {
  size_t in_use_bytes = 0;  // tensors (GPU) or resident set (host)
  size_t peak_bytes = 0;    // since the last reset (GPU) or process start (host)
  size_t reserved_bytes = 0;  // held from the driver (GPU); equals in_use on the host
};

MemoryStats memory_stats(Device device);
void reset_peak_memory(Device device);

}  // namespace tessera
