// How a model is split over ranks. Passed to GptModel's constructor; the default (no
// communicator, no pipeline) is the single-rank model that holds every parameter.
//   tp: the tensor-parallel group (must outlive the model and every graph built with it).
//     Attention heads and key/value groups, the MLP's hidden units and the padded vocabulary
//     are split over it (Megatron's layout); every rank draws the full parameters from the
//     seed and keeps its part, so any tp size starts from the single-rank model's weights.
//   sequence_parallel: Megatron's sequence parallelism: the norm/dropout regions hold only this
//     rank's share of the sequence (all-gathered before column-parallel layers, reduce-scattered
//     after row-parallel ones). Needs tp; the sequence length must divide by tp's size.
//   pipeline, pipeline_stage: pipeline parallelism: the model holds only the piece of virtual
//     stage (stage, chunk) of the layout (parallel/pipeline_layout.h): that virtual stage's
//     transformer layers, the embedding if it is the first virtual stage, the final norm,
//     output layer and loss if it is the last. A pp rank with vpp model chunks builds one model
//     per chunk. Unset: the whole model.
#pragma once

#include <cstdint>
#include <optional>

#include "parallel/pipeline_layout.h"

namespace tessera {

class Communicator;  // parallel/communicator.h

struct ModelParallelism {
  Communicator* tp = nullptr;
  bool sequence_parallel = false;
  std::optional<PipelineLayout> pipeline = std::nullopt;
  StageChunk pipeline_stage = {};  // (this rank's pp rank, model chunk); only with `pipeline`

  int tp_size() const;  // 1 without tp
  int tp_rank() const;  // 0 without tp
};

// The models' activations are [B, T, C]: sequence parallelism shards dim 1.
constexpr int64_t kSequenceDim = 1;

}  // namespace tessera
