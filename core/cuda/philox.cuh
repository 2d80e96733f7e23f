// Philox4x32-10 for CUDA kernels: the same function as philox4x32_10 in core/random.h (same
// constants, same rounds, same word order), callable from host and device. core/random.h is
// plain host C++ and stays the reference; tests/gpu/elementwise_gpu_test.cpp checks that the GPU
// draws equal the CPU's bit for bit.
#pragma once

#include <cstdint>

namespace tessera::cuda {

struct PhiloxWords {
  uint32_t w[4];
};

__host__ __device__ __forceinline__ PhiloxWords philox4x32_10(uint64_t seed, uint64_t block, uint64_t offset) {
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
  return {{c0, c1, c2, c3}};
}

// uint_to_unit_float of core/random.h: (word >> 8) * 2^-24, exact in f32, in [0, 1).
__host__ __device__ __forceinline__ float unit_float(uint32_t word) {
  return static_cast<float>(word >> 8) * (1.0f / 16777216.0f);
}

}  // namespace tessera::cuda
