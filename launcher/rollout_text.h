// Helpers the RL trainers (tessera grpo, tessera ppo) share around sampling rollouts.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "data/tokenizer.h"

namespace tessera {

// A sampling stream per rank: ranks draw different samples from one recipe seed.
inline uint64_t rank_seed(uint64_t seed, int64_t rank) {
  return seed ^ (0x9E3779B97F4A7C15ULL * uint64_t(rank + 1));
}

// The text of a sampled response. A model whose (padded) vocabulary is larger than the
// tokenizer's can sample an id no text has; it reads as U+FFFD, which no reward takes for an answer.
std::string decode_response(const Tokenizer& tokenizer, std::span<const int32_t> ids);

}  // namespace tessera
