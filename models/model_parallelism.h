// How a model is split over tensor-parallel ranks. Passed to GptModel's constructor; the
// default (no communicator) is the single-rank model that holds every parameter.
//   tp: the tensor-parallel group (must outlive the model and every graph built with it).
//     Attention heads and key/value groups, the MLP's hidden units and the padded vocabulary
//     are split over it (Megatron's layout); every rank draws the full parameters from the
//     seed and keeps its part, so any tp size starts from the single-rank model's weights.
//   sequence_parallel: Megatron's sequence parallelism: the norm/dropout regions hold only this
//     rank's share of the sequence (all-gathered before column-parallel layers, reduce-scattered
//     after row-parallel ones). Needs tp; the sequence length must divide by tp's size.
#pragma once

#include <cstdint>

namespace tessera {

class Communicator;  // parallel/communicator.h

struct ModelParallelism {
  Communicator* tp = nullptr;
  bool sequence_parallel = false;

  int tp_size() const;  // 1 without tp
  int tp_rank() const;  // 0 without tp
};

// The models' activations are [B, T, C]: sequence parallelism shards dim 1.
constexpr int64_t kSequenceDim = 1;

}  // namespace tessera
