// Between a rank's live training state and a distributed checkpoint (distributed_checkpoint.h):
// which pieces of which global tensors this rank holds, captured into host copies for writing,
// and restored from any checkpoint layout by reading just those pieces.
//
// Where a rank's parameter sits in the single-rank model's tensor: tensor-parallel parameters are
// split as Megatron splits them (column-parallel qkv / fc1 / vocabulary tables along dim 0, fc1
// in two blocks for SwiGLU; row-parallel proj / fc2 weights along dim 1); everything else is
// whole. Pipeline pieces keep global names, so a pp rank simply holds fewer tensors.
//
// De-duplication (each element written once): model tensors by data-parallel rank 0 only, and a
// tensor that every tp rank holds whole by tp rank 0 only; the last pipeline stage's copy of a tied
// embedding table is never written (the first stage's is the tensor). Optimizer state follows the
// model, except with ZeRO, where every dp rank writes its own flat slices (ShardPiece).
#pragma once

#include <vector>

#include "launcher/checkpoint_state.h"
#include "launcher/distributed_checkpoint.h"
#include "optim/adamw.h"
#include "optim/distributed_optimizer.h"
#include "optim/fsdp_optimizer.h"

namespace tessera {

// Where this rank sits (coordinates of parallel/process_groups.h; zeros for a single process).
struct CheckpointRank {
  int rank = 0, world_size = 1;
  int tp = 1, pp = 1;  // sizes
  int tp_rank = 0, pp_rank = 0, dp_rank = 0, cp_rank = 0;
};

// Captures what this rank writes: host f32 copies, safe to write while training goes on. The
// ZeRO-3 capture gathers the full weights over dp (collective: every dp rank must call it).
RankCheckpoint capture_rank_checkpoint(const ModelPiece& model, const AdamW& optimizer, const CheckpointRank& at);
RankCheckpoint capture_rank_checkpoint(const ModelPiece& model, const DistributedOptimizer& optimizer,
                                       const CheckpointRank& at);
RankCheckpoint capture_rank_checkpoint(const ModelPiece& model, const FsdpOptimizer& optimizer,
                                       const CheckpointRank& at);

// Restores this rank's parameters and optimizer state (and steps taken) from `reader`, whatever
// layout it was saved with; errors name the tensor and the file.
void restore_rank_checkpoint(CheckpointReader& reader, const ModelPiece& model, AdamW& optimizer);
void restore_rank_checkpoint(CheckpointReader& reader, const ModelPiece& model, DistributedOptimizer& optimizer);
void restore_rank_checkpoint(CheckpointReader& reader, const ModelPiece& model, FsdpOptimizer& optimizer);

// Restores the chunks' dropout streams when the checkpoint has this rank's (the same tp, pp and
// vpp sizes); returns false, leaving the streams as built, when the layout differs.
bool restore_rank_rng(const CheckpointReader& reader, const ModelPiece& model, const CheckpointRank& at);

// The single-rank model's parameters (f32, host) assembled from a checkpoint of any layout.
std::map<std::string, SavedParameter> assemble_model(CheckpointReader& reader);

}  // namespace tessera
