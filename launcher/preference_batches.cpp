#include "launcher/preference_batches.h"

#include <random>

#include "core/check.h"
#include "core/ops/ops.h"
#include "posttrain/log_probs.h"

namespace tessera {

std::vector<int64_t> preference_step_pairs(int64_t dataset_size, int64_t step, int64_t global_batch, uint64_t seed) {
  TS_CHECK(dataset_size > 0 && global_batch > 0 && step >= 0, "preference_step_pairs: dataset size ", dataset_size,
           ", global batch ", global_batch, ", step ", step, " (all must be positive, step >= 0)");
  std::vector<int64_t> order;
  int64_t epoch = -1;
  std::vector<int64_t> out;
  for (int64_t position = step * global_batch; position < (step + 1) * global_batch; ++position) {
    if (position / dataset_size != epoch) {
      epoch = position / dataset_size;
      order.resize(static_cast<size_t>(dataset_size));
      for (int64_t i = 0; i < dataset_size; ++i) order[static_cast<size_t>(i)] = i;
      std::mt19937_64 generator(seed + static_cast<uint64_t>(epoch));
      for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[static_cast<size_t>(generator() % i)]);
    }
    out.push_back(order[static_cast<size_t>(position % dataset_size)]);
  }
  return out;
}

PreferenceBatch make_preference_batch(const PreferenceDataset& data, const std::vector<int64_t>& pair_indices,
                                      Device device) {
  TS_CHECK(!pair_indices.empty(), "make_preference_batch: no pairs");
  const int64_t n = static_cast<int64_t>(pair_indices.size()), t = data.sequence_length();
  std::vector<int64_t> tokens, labels;
  std::vector<float> mask;
  PreferenceBatch batch;
  batch.pairs = n;
  for (int side = 0; side < 2; ++side) {
    for (int64_t index : pair_indices) {
      const PreferenceSample& sample = data.sample(index);
      const PreferenceSequence& row = side == 0 ? sample.chosen : sample.rejected;
      tokens.insert(tokens.end(), row.tokens.begin(), row.tokens.end());
      labels.insert(labels.end(), row.labels.begin(), row.labels.end());
      for (int64_t label : row.labels) mask.push_back(label == kPreferenceIgnoreIndex ? 0.0f : 1.0f);
      batch.lengths.push_back(row.length);
    }
  }
  batch.tokens = Tensor::from_vector(tokens, {2 * n, t}).to(device);
  batch.labels = Tensor::from_vector(labels, {2 * n, t}).to(device);
  batch.response_mask = Tensor::from_vector(mask, {2 * n, t}).to(device);
  return batch;
}

Tensor response_log_probs(const GptModel& model, const PreferenceBatch& batch) {
  const Tensor logits = model.forward(batch.tokens);
  const Tensor per_token = token_log_probs(logits, batch.labels, kPreferenceIgnoreIndex);
  return masked_sequence_sum(per_token.to(DType::F32), batch.response_mask);
}

}  // namespace tessera
