// Ref-counted memory behind tensors. A Storage owns one allocation on one device; views of a
// tensor share its Storage through std::shared_ptr. Allocation goes through an Allocator so
// the CUDA backend can plug in its caching allocator without the tensor knowing.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "core/device.h"

namespace tessera {

class Storage {
 public:
  using Deleter = std::function<void(void*)>;
  Storage(void* data, size_t nbytes, Device device, Deleter deleter);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

  // Sharded parameters (ZeRO-3/FSDP, parallel/fsdp.h): release() frees the memory now while every
  // tensor viewing this storage lives on; data() is null (Tensor::data_ptr refuses) until
  // refill() hands it the memory of `fresh` (same nbytes and device; `fresh` is left empty), so
  // tensors saved by the autograd graph see the new bytes. Both refuse the wrong state.
  void release();
  void refill(Storage& fresh);
  bool released() const { return released_; }

 private:
  void* data_;
  size_t nbytes_;
  Device device_;
  Deleter deleter_;
  bool released_ = false;
};

// What a device must provide to hold memory.
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual std::shared_ptr<Storage> allocate(size_t nbytes) = 0;
};

// Host memory, 64-byte aligned (a cache line; also enough for AVX-512 loads). Blocks of 64 KiB
// and more are cached by size when freed and handed out again: a training step allocates the
// same large activations every step, and returning them to the OS each time (munmap, then
// page faults on the next mmap) cost more than the arithmetic on small CPU runs. The pool is
// shared with the deleters, so a tensor may outlive the allocator.
class CpuAllocator final : public Allocator {
 public:
  CpuAllocator();
  std::shared_ptr<Storage> allocate(size_t nbytes) override;

 private:
  struct Pool;
  std::shared_ptr<Pool> pool_;
};

}  // namespace tessera
