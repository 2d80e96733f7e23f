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

std::shared_ptr<Storage> CudaCachingAllocator::allocate(size_t nbytes) {
  size_t rounded = round_size(nbytes);
  void* ptr = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_blocks_.find(rounded);
    if (it != free_blocks_.end() && !it->second.empty()) {
      ptr = it->second.back();
      it->second.pop_back();
    } else {
      ptr = device_malloc(rounded);
    }
    ++stats_.allocations;
    stats_.allocated_bytes += rounded;
    stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  }
  return std::make_shared<Storage>(ptr, nbytes, Device::cuda(device_),
                                   [this, rounded](void* p) { free_block(p, rounded); });
}

void CudaCachingAllocator::free_block(void* ptr, size_t rounded) {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.allocated_bytes -= rounded;
  free_blocks_[rounded].push_back(ptr);
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
