#include "core/memory_stats.h"

#include <fstream>
#include <string>

#ifdef TESSERA_WITH_CUDA
#include "core/cuda/cuda_backend.h"
#endif

namespace tessera {

namespace {

// VmRSS / VmHWM from /proc/self/status, in bytes (0 where unavailable).
size_t proc_status_kib(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string key;
  size_t kib = 0;
  while (status >> key) {
    if (key == field + ":") {
      status >> kib;
      return kib * 1024;
    }
    std::getline(status, key);
  }
  return 0;
}

}  // namespace

MemoryStats memory_stats(Device device) {
#ifdef TESSERA_WITH_CUDA
  if (device.is_cuda()) {
    CudaMemoryStats s = cuda_backend(device.index).caching_allocator().stats();
    return {s.allocated_bytes, s.peak_allocated_bytes, s.reserved_bytes};
  }
#endif
  TS_CHECK(device.is_cpu(), "memory_stats: no backend for ", device);
  size_t rss = proc_status_kib("VmRSS");
  return {rss, proc_status_kib("VmHWM"), rss};
}

void reset_peak_memory(Device device) {
#ifdef TESSERA_WITH_CUDA
  if (device.is_cuda()) cuda_backend(device.index).caching_allocator().reset_peak();
#else
  (void)device;
#endif
}

}  // namespace tessera
