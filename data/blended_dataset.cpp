#include "data/blended_dataset.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/check.h"

namespace tessera {

BlendingIndices build_blending_indices(const std::vector<double>& weights, int64_t size) {
  TS_CHECK(!weights.empty() && weights.size() < static_cast<size_t>(std::numeric_limits<int16_t>::max()), "blending ",
           weights.size(), " datasets: expected 1 to 32766");
  double total = 0.0;
  for (double weight : weights) {
    TS_CHECK(std::isfinite(weight) && weight >= 0, "blend weight ", weight, " is not a non-negative number");
    total += weight;
  }
  TS_CHECK(total > 0, "blend weights sum to 0; give at least one dataset a positive weight");
  TS_CHECK(size >= 0, "blended dataset size ", size, " is negative");
  std::vector<double> normalized(weights.size());
  for (size_t d = 0; d < weights.size(); ++d) normalized[d] = weights[d] / total;

  BlendingIndices indices;
  indices.dataset.resize(static_cast<size_t>(size));
  indices.dataset_sample.resize(static_cast<size_t>(size));
  std::vector<int64_t> taken(weights.size(), 0);
  for (int64_t i = 0; i < size; ++i) {
    const double after = static_cast<double>(i + 1);
    // Below upper quota: one more sample keeps taken <= ceil(weight x after). The margin keeps
    // rounding in weight x after from admitting a dataset exactly at its quota.
    const double margin = 1e-12 * after;
    int64_t chosen = -1;
    double best_priority = -1.0;
    for (size_t d = 0; d < normalized.size(); ++d) {
      if (static_cast<double>(taken[d]) >= normalized[d] * after - margin) continue;
      const double priority = normalized[d] / static_cast<double>(taken[d] + 1);
      if (priority > best_priority) {
        best_priority = priority;
        chosen = static_cast<int64_t>(d);
      }
    }
    TS_CHECK(chosen >= 0, "blending: no dataset below its quota at sample ", i, " (weights sum to ", total, ")");
    indices.dataset[static_cast<size_t>(i)] = static_cast<int16_t>(chosen);
    indices.dataset_sample[static_cast<size_t>(i)] = taken[static_cast<size_t>(chosen)]++;
  }
  return indices;
}

BlendedDataset::BlendedDataset(std::vector<std::shared_ptr<const TokenSampleDataset>> datasets,
                               std::vector<double> weights, int64_t size)
    : datasets_(std::move(datasets)) {
  TS_CHECK(!datasets_.empty() && datasets_.size() == weights.size(), "blended dataset: ", datasets_.size(),
           " datasets but ", weights.size(), " weights");
  for (size_t d = 0; d < datasets_.size(); ++d) {
    TS_CHECK(datasets_[d] != nullptr, "blended dataset: dataset ", d, " is missing");
    TS_CHECK(datasets_[d]->sequence_length() == datasets_.front()->sequence_length(), "blended dataset: dataset ", d,
             " has sequence length ", datasets_[d]->sequence_length(), " but dataset 0 has ",
             datasets_.front()->sequence_length());
  }
  indices_ = build_blending_indices(weights, size);
  std::vector<int64_t> needed(datasets_.size(), 0);
  for (int16_t d : indices_.dataset) ++needed[static_cast<size_t>(d)];
  for (size_t d = 0; d < datasets_.size(); ++d) {
    TS_CHECK(needed[d] <= datasets_[d]->size(), "blended dataset: dataset ", d, " (weight ", weights[d], ") must give ",
             needed[d], " of the ", size, " samples but has only ", datasets_[d]->size(),
             "; build it with more samples (more epochs) or lower its weight");
  }
}

int BlendedDataset::dataset_of(int64_t index) const {
  TS_CHECK(index >= 0 && index < size(), "blended dataset: sample ", index, " out of range [0, ", size(), ")");
  return indices_.dataset[static_cast<size_t>(index)];
}

int64_t BlendedDataset::sample_within_dataset(int64_t index) const {
  TS_CHECK(index >= 0 && index < size(), "blended dataset: sample ", index, " out of range [0, ", size(), ")");
  return indices_.dataset_sample[static_cast<size_t>(index)];
}

std::vector<int64_t> BlendedDataset::sample(int64_t index) const {
  return datasets_[static_cast<size_t>(dataset_of(index))]->sample(sample_within_dataset(index));
}

}  // namespace tessera
