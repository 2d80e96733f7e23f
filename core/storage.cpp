#include "core/storage.h"

#include <cstdlib>
#include <new>

#include "core/check.h"

namespace tessera {

Storage::Storage(void* data, size_t nbytes, Device device, Deleter deleter)
    : data_(data), nbytes_(nbytes), device_(device), deleter_(std::move(deleter)) {}

Storage::~Storage() {
  if (deleter_ && data_) deleter_(data_);
}

std::shared_ptr<Storage> CpuAllocator::allocate(size_t nbytes) {
  constexpr size_t kAlignment = 64;
  size_t rounded = (nbytes + kAlignment - 1) / kAlignment * kAlignment;
  void* data = rounded == 0 ? nullptr : std::aligned_alloc(kAlignment, rounded);
  TS_CHECK(rounded == 0 || data != nullptr, "out of host memory allocating ", nbytes, " bytes");
  return std::make_shared<Storage>(data, nbytes, Device::cpu(), [](void* p) { std::free(p); });
}

}  // namespace tessera
