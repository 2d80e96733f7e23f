// Device memory for one GPU without cudaMalloc in the steady state. Freed blocks go back to
// a pool keyed by their rounded size and are handed out again to the next request of that
// size class (training steps repeat the same sizes, so after warm-up every request is a hit).
// Sizes round up to 512 B below 1 MiB and to 2 MiB above. Blocks are used in the order of
// the device's compute stream, so a block freed on the host may be reused at once: the GPU
// sees the next user's kernels after the previous user's. When cudaMalloc fails, every
// cached block is released and the request retried once. Thread-safe.
//
// Private pools serve CUDA graph capture (core/device_graph.h): while a pool is active for a
// thread, that thread's requests are served from the pool (growing it from the shared cache or
// the driver) and blocks allocated there return to it when freed. A captured graph replays
// into the pool's addresses, so no block of the pool is handed to anyone else until the pool is
// destroyed; its blocks count as allocated for as long as the pool exists (what replays use).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <thread>
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
  // Returns every cached (free) block of the shared cache to the driver.
  void release_cached();

  // A new private pool (see above); the id stays unique for the allocator's lifetime.
  int create_private_pool();
  // Routes the calling thread's requests to `pool` (-1: back to the shared cache).
  void use_private_pool(int pool);
  // Hands the pool's free blocks back to the shared cache; blocks still in tensors go there
  // when those are freed.
  void destroy_private_pool(int pool);
  // Bytes held by `pool`, free or in tensors.
  size_t private_pool_bytes(int pool) const;

  static size_t round_size(size_t nbytes);

 private:
  using FreeLists = std::unordered_map<size_t, std::vector<void*>>;
  struct PrivatePool {
    FreeLists free_blocks;
    size_t bytes = 0;
  };
  void* take_block(FreeLists& free_blocks, size_t rounded);
  void free_block(void* ptr, size_t rounded, int pool);
  void* device_malloc(size_t rounded);

  int device_;
  mutable std::mutex mutex_;
  FreeLists free_blocks_;
  std::map<int, PrivatePool> private_pools_;
  int next_pool_id_ = 0;
  int active_pool_ = -1;
  std::thread::id active_pool_thread_;
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
