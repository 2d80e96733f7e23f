// Which preference pairs each optimizer step reads, and pairs as model inputs.
//   Order: epoch e visits the pairs in a Fisher-Yates shuffle (std::mt19937_64 seeded with
//   seed + e: the same order on every platform); epochs follow each other. Step s (0-based) reads
//   positions [s G, (s + 1) G) of that sequence (G = the global batch), and data-parallel rank r
//   of dp takes its contiguous share [r G / dp, (r + 1) G / dp), split into micro-batches. The
//   global batch is therefore the same pairs whatever dp is, which makes dp = N runs reproduce
//   the single-process losses.
//   Batches: the n pairs' chosen rows, then their n rejected rows, [2n, T].
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "data/preference_dataset.h"
#include "models/gpt_model.h"

namespace tessera {

// The pair indices global step `step` (0-based) reads, in batch order.
std::vector<int64_t> preference_step_pairs(int64_t dataset_size, int64_t step, int64_t global_batch, uint64_t seed);

struct PreferenceBatch {
  int64_t pairs = 0;             // n
  Tensor tokens;                 // [2n, T] i64: chosen rows, then rejected rows
  Tensor labels;                 // [2n, T] i64: the response's next tokens, kPreferenceIgnoreIndex elsewhere
  Tensor response_mask;          // [2n, T] f32: 1 where labels count
  std::vector<int64_t> lengths;  // [2n] real tokens of each row
};
PreferenceBatch make_preference_batch(const PreferenceDataset& data, const std::vector<int64_t>& pair_indices,
                                      Device device);

// Log-probability of each row's response under `model` (sum over its response tokens), [2n] f32:
// the first n are the chosen responses, the last n the rejected ones.
Tensor response_log_probs(const GptModel& model, const PreferenceBatch& batch);

}  // namespace tessera
