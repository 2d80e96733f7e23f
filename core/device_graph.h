// Capture once, replay many times: the device work a piece of host code queues (a training
// micro-batch's forward and backward: hundreds of kernels) is recorded into a CUDA graph and
// replayed with one launch, so the host's per-op cost (autograd, checks, launches) is paid
// once instead of every step.
//
// What a replay reads and writes are the addresses seen at capture: inputs must be copied into
// the tensors the capture read (not replaced), outputs read from the tensors it produced.
// Memory the captured work allocates comes from a private pool that the graph keeps for its
// lifetime (counted as allocated in the memory stats), so nothing else can be handed those
// addresses between replays. The captured code must not synchronize with the host (no .item(),
// no host<->device copies) and must not depend on host state that changes between replays
// (random offsets, learning rates passed by value): capture throws, naming the failing call.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "core/device.h"

namespace tessera {

class DeviceGraph {
 public:
  virtual ~DeviceGraph() = default;
  // Queues the captured work again on the device's compute stream (asynchronous).
  virtual void replay() = 0;
  // Bytes of the private pool the replays write into.
  virtual size_t pool_bytes() const = 0;
};

// Runs `body` once with `device`'s compute stream in capture mode: its device work is recorded,
// not run. Only CUDA devices; throws for the CPU and in builds without CUDA.
std::unique_ptr<DeviceGraph> capture_device_graph(Device device, const std::function<void()>& body);

}  // namespace tessera
