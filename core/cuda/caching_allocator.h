// Device memory for one GPU without cudaMalloc in the steady state. Freed blocks go back to
// a pool keyed by their rounded size and are handed out again to the next request of that
// size class (training steps repeat the same sizes, so after warm-up every request is a hit).
// Sizes round up to 512 B below 1 MiB and to 2 MiB above. Blocks are used in the order of
// the device's compute stream, so a block freed on the host may be reused at once: the GPU
// sees the next user's kernels after the previous user's. When cudaMalloc fails, every
// cached block is released and the request retried once. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/storage.h"

namespace tessera {

struct CudaMemoryStats {
  size_t allocated_bytes = 0;       // in live tensors (rounded sizes)
  size_t reserved_bytes = 0;        // held from the driver: allocated + cached
  size_t peak_allocated_bytes = 0;  // since the last reset_peak()
  uint64_t allocations = 0;         // requests served
  uint64_t device_allocations = 0;  // cudaMalloc calls made
};

class CudaCachingAllocator final : public Allocator {
 public:
  explicit CudaCachingAllocator(int device) : device_(device) {}
  ~CudaCachingAllocator() override;

  std::shared_ptr<Storage> allocate(size_t nbytes) override;
  CudaMemoryStats stats() const;
  void reset_peak();
  // Returns every cached (free) block to the driver.
  void release_cached();

  static size_t round_size(size_t nbytes);

 private:
  void free_block(void* ptr, size_t rounded);
  void* device_malloc(size_t rounded);

  int device_;
  mutable std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_blocks_;
  CudaMemoryStats stats_;
};

// Page-locked host memory for staging copies (cudaMemcpyAsync from pageable memory is not
// asynchronous). Cached like device memory.
class PinnedHostAllocator final : public Allocator {
 public:
  ~PinnedHostAllocator() override;
  std::shared_ptr<Storage> allocate(size_t nbytes) override;

 private:
  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_blocks_;
};

}  // namespace tessera
