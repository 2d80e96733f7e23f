// numpy.random.RandomState(seed).shuffle, reproduced exactly, so that the document and
// shuffle indices of a GPT dataset equal Megatron-LM's for the same seed (Megatron builds them
// with numpy's legacy RandomState). numpy's legacy generator is MT19937 seeded with
// init_genrand(seed) (std::mt19937 is the same engine, standard-mandated), and its shuffle is
// Fisher-Yates from the last element down, drawing j in [0, i] by masked rejection sampling
// on 32-bit draws (numpy's random_interval). Arrays of more than 2^32 elements, where numpy
// switches to 64-bit draws, are refused. Checked against numpy itself by
// tests/data/numpy_random_state_test.cpp (a fixture that numpy wrote).
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <utility>

#include "core/check.h"

namespace tessera {

class NumpyRandomState {
 public:
  explicit NumpyRandomState(uint32_t seed) : engine_(seed) {}

  // A uniform integer in [0, max], max < 2^32, consuming the stream as numpy's random_interval.
  uint32_t interval(uint32_t max);

  template <typename T>
  void shuffle(std::span<T> values) {
    TS_CHECK(values.size() <= (uint64_t{1} << 32), "shuffling ", values.size(),
             " elements: more than 2^32 is not supported (numpy draws 64-bit numbers there)");
    for (size_t i = values.size(); i > 1; --i) {
      size_t j = interval(static_cast<uint32_t>(i - 1));
      std::swap(values[i - 1], values[j]);
    }
  }

 private:
  std::mt19937 engine_;
};

}  // namespace tessera
