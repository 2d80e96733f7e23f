#include "core/cuda/caching_allocator.h"

#include <algorithm>
#include <cstdio>

#include "core/cuda/cuda_check.h"
#include "core/cuda/stream.h"

namespace tessera {

namespace {
constexpr size_t kSmallLimit = size_t{1} << 20;
constexpr size_t kSmallRound = 512;
constexpr size_t kLargeRound = size_t{2} << 20;
}  // namespace

size_t CudaCachingAllocator::round_size(size_t nbytes) {
  size_t unit = nbytes < kSmallLimit ? kSmallRound : kLargeRound;
  return std::max<size_t>(unit, (nbytes + unit - 1) / unit * unit);
}

CudaCachingAllocator::~CudaCachingAllocator() { release_cached(); }

void* CudaCachingAllocator::device_malloc(size_t rounded) {
  CudaDeviceGuard guard(device_);
  void* ptr = nullptr;
  cudaError_t status = cudaMalloc(&ptr, rounded);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear the sticky-free error before retrying
    for (auto& [size, blocks] : free_blocks_) {
      for (void* block : blocks) cudaFree(block);
      stats_.reserved_bytes -= size * blocks.size();
    }
    free_blocks_.clear();
    status = cudaMalloc(&ptr, rounded);
  }
  TS_CHECK(status == cudaSuccess, "out of GPU memory on cuda:", device_, " allocating ", rounded, " bytes (",
           stats_.allocated_bytes, " bytes in tensors, ", stats_.reserved_bytes, " reserved): ",
           cudaGetErrorString(status));
  ++stats_.device_allocations;
  stats_.reserved_bytes += rounded;
  return ptr;
}

void* CudaCachingAllocator::take_block(FreeLists& free_blocks, size_t rounded) {
  auto it = free_blocks.find(rounded);
  if (it == free_blocks.end() || it->second.empty()) return nullptr;
  void* ptr = it->second.back();
  it->second.pop_back();
  return ptr;
}

std::shared_ptr<Storage> CudaCachingAllocator::allocate(size_t nbytes) {
  size_t rounded = round_size(nbytes);
  void* ptr = nullptr;
  int pool = -1;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (active_pool_ >= 0 && std::this_thread::get_id() == active_pool_thread_) pool = active_pool_;
    if (pool < 0) {
      ptr = take_block(free_blocks_, rounded);
      if (!ptr) ptr = device_malloc(rounded);
      stats_.allocated_bytes += rounded;
    } else {
      PrivatePool& p = private_pools_.at(pool);
      ptr = take_block(p.free_blocks, rounded);
      if (!ptr) {
        // The pool grows: its new block counts as allocated until the pool is destroyed.
        ptr = take_block(free_blocks_, rounded);
        if (!ptr) ptr = device_malloc(rounded);
        p.bytes += rounded;
        stats_.allocated_bytes += rounded;
      }
    }
    ++stats_.allocations;
    stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  }
  return std::make_shared<Storage>(ptr, nbytes, Device::cuda(device_),
                                   [this, rounded, pool](void* p) { free_block(p, rounded, pool); });
}

void CudaCachingAllocator::free_block(void* ptr, size_t rounded, int pool) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = pool >= 0 ? private_pools_.find(pool) : private_pools_.end();
  if (it != private_pools_.end()) {
    it->second.free_blocks[rounded].push_back(ptr);
    return;
  }
  stats_.allocated_bytes -= rounded;
  free_blocks_[rounded].push_back(ptr);
}

int CudaCachingAllocator::create_private_pool() {
  std::lock_guard<std::mutex> lock(mutex_);
  private_pools_.emplace(next_pool_id_, PrivatePool{});
  return next_pool_id_++;
}

void CudaCachingAllocator::use_private_pool(int pool) {
  std::lock_guard<std::mutex> lock(mutex_);
  TS_CHECK(pool < 0 || private_pools_.count(pool), "CudaCachingAllocator: no private pool ", pool);
  TS_CHECK(pool < 0 || active_pool_ < 0 || active_pool_thread_ == std::this_thread::get_id(),
           "CudaCachingAllocator: private pool ", active_pool_, " is already in use by another thread");
  active_pool_ = pool;
  active_pool_thread_ = std::this_thread::get_id();
}

void CudaCachingAllocator::destroy_private_pool(int pool) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = private_pools_.find(pool);
  if (it == private_pools_.end()) return;
  if (active_pool_ == pool) active_pool_ = -1;
  // Blocks still in tensors stay counted as allocated and come back through free_block.
  for (auto& [size, blocks] : it->second.free_blocks) {
    stats_.allocated_bytes -= size * blocks.size();
    auto& shared = free_blocks_[size];
    shared.insert(shared.end(), blocks.begin(), blocks.end());
  }
  private_pools_.erase(it);
}

size_t CudaCachingAllocator::private_pool_bytes(int pool) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = private_pools_.find(pool);
  return it == private_pools_.end() ? 0 : it->second.bytes;
}

CudaMemoryStats CudaCachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CudaCachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_allocated_bytes = stats_.allocated_bytes;
}

void CudaCachingAllocator::release_cached() {
  std::lock_guard<std::mutex> lock(mutex_);
  CudaDeviceGuard guard(device_);
  TS_CUDA_CHECK(cudaDeviceSynchronize());  // cached blocks may still be read by queued kernels
  for (auto& [size, blocks] : free_blocks_) {
    for (void* block : blocks) TS_CUDA_CHECK(cudaFree(block));
    stats_.reserved_bytes -= size * blocks.size();
  }
  free_blocks_.clear();
}

PinnedHostAllocator::~PinnedHostAllocator() {
  for (auto& [size, blocks] : free_blocks_)
    for (void* block : blocks) cudaFreeHost(block);
}

std::shared_ptr<Storage> PinnedHostAllocator::allocate(size_t nbytes) {
  size_t rounded = CudaCachingAllocator::round_size(nbytes);
  void* ptr = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_blocks_.find(rounded);
    if (it != free_blocks_.end() && !it->second.empty()) {
      ptr = it->second.back();
      it->second.pop_back();
    }
  }
  if (!ptr) TS_CUDA_CHECK(cudaMallocHost(&ptr, rounded));
  return std::make_shared<Storage>(ptr, nbytes, Device::cpu(), [this, rounded](void* p) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_blocks_[rounded].push_back(p);
  });
}

}  // namespace tessera
