// The three indices of a GPT dataset, built as Megatron-LM builds them
// (megatron/core/datasets/gpt_dataset.py and helpers.cpp), so that the same data, seed and
// sequence length give the same samples in the same order:
//   document index  the sequence ids of the split repeated once per epoch, each epoch block
//                   shuffled together (numpy RandomState); with a separate final epoch, the
//                   last epoch is shuffled on its own;
//   sample index    [samples + 1][2]: (position in the document index, token offset) where
//                   each sample starts; a sample spans sequence_length + 1 tokens across
//                   document boundaries, and the next sample starts on its last token (the
//                   extra token is the last label); the last partial sample is dropped;
//   shuffle index   a permutation of the samples (the final-epoch part shuffled separately).
// "Document" here means a sequence of the indexed dataset, as in Megatron's GPT dataset.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "data/numpy_random_state.h"

namespace tessera {

struct GptEpochPlan {
  int64_t tokens_per_epoch = 0;
  int64_t num_epochs = 1;
  bool separate_final_epoch = false;
  int64_t samples_before_final_epoch = 0;  // meaningful when separate_final_epoch
};

// Megatron's _get_num_epochs and its separate-final-epoch rule (final epoch below 80% full).
// num_samples: std::nullopt builds exactly one epoch.
GptEpochPlan plan_gpt_epochs(int64_t tokens_per_epoch, int64_t sequence_length, std::optional<int64_t> num_samples);

// Megatron's _build_document_index over the sequence ids [begin, end).
std::vector<int32_t> build_gpt_document_index(int64_t begin, int64_t end, int64_t num_epochs, bool separate_final_epoch,
                                              NumpyRandomState& random);

// Megatron's build_sample_idx (drop the last partial sample, one extra token per sample),
// flattened row-major. sequence_lengths is indexed by sequence id.
std::vector<int64_t> build_gpt_sample_index(std::span<const int32_t> sequence_lengths,
                                            std::span<const int32_t> document_index, int64_t sequence_length,
                                            int64_t num_epochs, int64_t tokens_per_epoch);

// Megatron's _build_shuffle_index: [0, first_part) and [first_part, total) each shuffled.
std::vector<int64_t> build_gpt_shuffle_index(int64_t first_part, int64_t total, NumpyRandomState& random);

}  // namespace tessera
