// The interface a loader draws training samples from: a fixed number of samples, each
// sequence_length() + 1 token ids, so that inputs are tokens [0, L) and labels tokens [1, L]
// (Megatron's add_extra_token_to_sequence). GptDataset and BlendedDataset implement it.
// sample() must be safe to call from several threads at once (the loader prefetches on a
// background thread).
#pragma once

#include <cstdint>
#include <vector>

namespace tessera {

class TokenSampleDataset {
 public:
  virtual ~TokenSampleDataset() = default;
  virtual int64_t size() const = 0;
  virtual int64_t sequence_length() const = 0;
  virtual std::vector<int64_t> sample(int64_t index) const = 0;
};

}  // namespace tessera
