// Dropout's draw: 16 random bits per element. Element `index` uses the high half of Philox
// word index / 2 (core/random.h) for an even index, the low half for an odd one: half the
// Philox work of a word per element (the CUDA kernel is bound by it), while p keeps a
// resolution of 2^-16 (flash-attention's dropout uses 8 bits).
//   keep(index) = dropout_bits(index) >= dropout_threshold(p), i.e. bits * 2^-16 >= p.
// core/cuda/random.cu reproduces this map bit for bit.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/random.h"

namespace tessera {

inline uint32_t dropout_bits(const PhiloxState& state, uint64_t index) {
  uint32_t word = philox_word(state, index / 2);
  return index % 2 == 0 ? word >> 16 : word & 0xFFFFu;
}

inline uint32_t dropout_threshold(double p) { return static_cast<uint32_t>(std::ceil(p * 65536.0)); }

}  // namespace tessera
