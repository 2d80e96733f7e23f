// BlendedDataset: several datasets mixed by weight into one sequence of `size` samples, as
// Megatron-LM's BlendedDataset does, with one change in how the mix is ordered. Megatron's
// build_blending_indices gives sample i to the dataset furthest behind weight x max(i, 1);
// that lets a dataset drift up to about 1.5 samples from its share (measured over random
// weights). Tessera uses the quota method of Balinski and Young instead: sample i + 1 goes,
// among the datasets still below weight x (i + 1), to the one with the largest
// weight / (taken + 1). After every n samples each dataset has contributed
// floor(weight x n) or ceil(weight x n) samples: within one sample of its share. The order is
// deterministic (no RNG) but differs from Megatron's. Each dataset's samples are taken in its
// own order: the k-th sample drawn from dataset d is d's sample k.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "data/token_sample_dataset.h"

namespace tessera {

struct BlendingIndices {
  std::vector<int16_t> dataset;         // which dataset sample i comes from
  std::vector<int64_t> dataset_sample;  // its index within that dataset
};

// The quota-method order above; weights are normalized to sum to 1 first.
BlendingIndices build_blending_indices(const std::vector<double>& weights, int64_t size);

class BlendedDataset : public TokenSampleDataset {
 public:
  // Every dataset must have the same sequence length and enough samples for its share
  // (the error says which one falls short and by how much).
  BlendedDataset(std::vector<std::shared_ptr<const TokenSampleDataset>> datasets, std::vector<double> weights,
                 int64_t size);

  int64_t size() const override { return static_cast<int64_t>(indices_.dataset.size()); }
  int64_t sequence_length() const override { return datasets_.front()->sequence_length(); }
  std::vector<int64_t> sample(int64_t index) const override;

  int dataset_of(int64_t index) const;
  int64_t sample_within_dataset(int64_t index) const;

 private:
  std::vector<std::shared_ptr<const TokenSampleDataset>> datasets_;
  BlendingIndices indices_;
};

}  // namespace tessera
