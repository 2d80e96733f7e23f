// Device-side input checks (core/cuda/device_error.cuh) that a CUDA graph capture cannot wait
// for: the capture collects them and its replays read them (core/cuda/cuda_graph.cpp).
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"

namespace tessera::cuda {

constexpr unsigned long long kNoBadIndex = ~0ull;  // a check slot's value while nothing is reported

// A check recorded during a capture: its slot (kept alive, so its address stays the graph's)
// and what to report when a replay finds a bad index in it.
struct DeferredIndexCheck {
  Tensor slot;
  std::string what;
};

// The capture running on this thread collects its checks here (null when none runs).
std::vector<DeferredIndexCheck>*& deferred_index_checks();

}  // namespace tessera::cuda
