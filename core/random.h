// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011), identical on CPU and GPU:
// element i of a draw with (seed, offset) uses block i/4 of the stream keyed by `seed` at
// counter {lo(i/4), hi(i/4), lo(offset), hi(offset)}, word i%4. A Generator hands out a fresh
// offset per draw, so a draw is reproducible from (seed, offset) alone: dropout recomputes its
// mask in backward instead of storing it, and recomputation replays a region's draws by
// restoring the generator's state. Generators are passed explicitly, never global.
#pragma once

#include <array>
#include <cstdint>

namespace tessera {

struct PhiloxState {
  uint64_t seed = 0;
  uint64_t offset = 0;
};

// Four 32-bit words for one counter block.
inline std::array<uint32_t, 4> philox4x32_10(uint64_t seed, uint64_t block, uint64_t offset) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  uint32_t c0 = static_cast<uint32_t>(block), c1 = static_cast<uint32_t>(block >> 32);
  uint32_t c2 = static_cast<uint32_t>(offset), c3 = static_cast<uint32_t>(offset >> 32);
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(kMul0) * c0;
    uint64_t p1 = static_cast<uint64_t>(kMul1) * c2;
    uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return {c0, c1, c2, c3};
}

// Uniform float in [0, 1) from a 32-bit word (24 random mantissa bits).
inline float uint_to_unit_float(uint32_t word) { return static_cast<float>(word >> 8) * (1.0f / 16777216.0f); }

// 32-bit word for element `index` of the draw (seed, offset).
inline uint32_t philox_word(const PhiloxState& state, uint64_t index) {
  return philox4x32_10(state.seed, index / 4, state.offset)[index % 4];
}

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : state_{seed, 0} {}
  // Reserves one draw and returns the state that identifies it.
  PhiloxState next() { return {state_.seed, state_.offset++}; }
  PhiloxState state() const { return state_; }
  void set_state(PhiloxState state) { state_ = state; }
  uint64_t seed() const { return state_.seed; }

 private:
  PhiloxState state_;
};

}  // namespace tessera
