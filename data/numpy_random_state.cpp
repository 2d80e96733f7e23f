#include "data/numpy_random_state.h"

namespace tessera {

uint32_t NumpyRandomState::interval(uint32_t max) {
  if (max == 0) return 0;
  uint32_t mask = max;
  for (int shift = 1; shift <= 16; shift *= 2) mask |= mask >> shift;  // smallest 2^k - 1 >= max
  uint32_t value;
  do {
    value = static_cast<uint32_t>(engine_()) & mask;
  } while (value > max);
  return value;
}

}  // namespace tessera
