#include "core/storage.h"

#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "core/check.h"

namespace tessera {

Storage::Storage(void* data, size_t nbytes, Device device, Deleter deleter)
    : data_(data), nbytes_(nbytes), device_(device), deleter_(std::move(deleter)) {}

Storage::~Storage() {
  if (deleter_ && data_) deleter_(data_);
}

void Storage::release() {
  TS_CHECK(!released_, "Storage::release: the storage of ", nbytes_, " bytes is already released");
  if (deleter_ && data_) deleter_(data_);
  data_ = nullptr;
  deleter_ = nullptr;
  released_ = true;
}

void Storage::refill(Storage& fresh) {
  TS_CHECK(released_, "Storage::refill: the storage of ", nbytes_, " bytes still holds its memory; release() it first");
  TS_CHECK(!fresh.released_ && fresh.nbytes_ == nbytes_ && fresh.device_ == device_, "Storage::refill: needs ",
           nbytes_, " bytes on ", device_.str(), ", got ", fresh.nbytes_, " bytes on ", fresh.device_.str(),
           fresh.released_ ? " (released)" : "");
  data_ = fresh.data_;
  deleter_ = std::move(fresh.deleter_);
  fresh.data_ = nullptr;
  fresh.deleter_ = nullptr;
  fresh.released_ = true;
  released_ = false;
}

struct CpuAllocator::Pool {
  std::mutex mutex;
  std::unordered_map<size_t, std::vector<void*>> free_blocks;
  ~Pool() {
    for (auto& [size, blocks] : free_blocks)
      for (void* block : blocks) std::free(block);
  }
};

CpuAllocator::CpuAllocator() : pool_(std::make_shared<Pool>()) {}

std::shared_ptr<Storage> CpuAllocator::allocate(size_t nbytes) {
  constexpr size_t kAlignment = 64;
  constexpr size_t kCachedFrom = size_t{64} << 10;
  size_t rounded = (nbytes + kAlignment - 1) / kAlignment * kAlignment;
  if (rounded < kCachedFrom) {
    void* data = rounded == 0 ? nullptr : std::aligned_alloc(kAlignment, rounded);
    TS_CHECK(rounded == 0 || data != nullptr, "out of host memory allocating ", nbytes, " bytes");
    return std::make_shared<Storage>(data, nbytes, Device::cpu(), [](void* p) { std::free(p); });
  }
  rounded = (rounded + kCachedFrom - 1) / kCachedFrom * kCachedFrom;  // size classes of 64 KiB
  void* data = nullptr;
  {
    std::lock_guard<std::mutex> lock(pool_->mutex);
    auto it = pool_->free_blocks.find(rounded);
    if (it != pool_->free_blocks.end() && !it->second.empty()) {
      data = it->second.back();
      it->second.pop_back();
    }
  }
  if (!data) data = std::aligned_alloc(kAlignment, rounded);
  TS_CHECK(data != nullptr, "out of host memory allocating ", nbytes, " bytes");
  return std::make_shared<Storage>(data, nbytes, Device::cpu(), [pool = pool_, rounded](void* p) {
    std::lock_guard<std::mutex> lock(pool->mutex);
    pool->free_blocks[rounded].push_back(p);
  });
}

}  // namespace tessera
