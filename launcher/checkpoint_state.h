// Moves training state between the live objects of a run (the model's parameters and dropout
// streams, the optimizer's state, the step and the loader position) and a TrainingCheckpoint.
// Restoring first checks that the checkpoint holds exactly the model's parameters, by name and
// shape, and names the first one that differs.
#pragma once

#include <string>
#include <vector>

#include "launcher/checkpoint.h"
#include "models/gpt_model.h"
#include "optim/adamw.h"
#include "optim/distributed_optimizer.h"
#include "optim/fsdp_optimizer.h"

namespace tessera {

// What one rank checkpoints: a whole model (or a tp shard of it), or a pipeline rank's chunks,
// several with an interleaved schedule (vpp > 1). Layer names are global, so the chunks'
// parameters share one checkpoint, chunk after chunk (the order the trainer's optimizer holds
// them in); each chunk keeps its own random streams (chunk 0's are the checkpoint's dropout_rng
// and model_parallel_rng, the others' chunk_*_rngs). Restoring refuses another chunk count.
class ModelPiece {
 public:
  ModelPiece(const GptModel& model) : chunks_{&model} {}  // NOLINT(google-explicit-constructor): one chunk
  explicit ModelPiece(std::vector<const GptModel*> chunks);
  const std::vector<const GptModel*>& chunks() const { return chunks_; }
  StateDict named_parameters() const;  // chunk after chunk

 private:
  std::vector<const GptModel*> chunks_;
};

// The optimizer must have been built over the piece's parameters (same order). Tensors that are
// already f32 on the host are shared, not copied: write the checkpoint before the next step.
TrainingCheckpoint capture_training_state(const ModelPiece& model, const AdamW& optimizer, int64_t step,
                                          int64_t consumed_samples, const std::string& config_yaml);

// `source` names the checkpoint in errors (its path).
void restore_training_state(const TrainingCheckpoint& checkpoint, const std::string& source, const ModelPiece& model,
                            AdamW& optimizer);

// ZeRO: the optimizer state holds only this data-parallel rank's pieces (optim/
// distributed_optimizer.h), each stored flat under its parameter's name (/optimizer/master,
// exp_avg, exp_avg_sq: 1-D, the piece's length). Restoring needs the same pieces: the same dp
// size and bucket layout (parallel.ddp_bucket_size_mb); any other is refused naming the parameter.
TrainingCheckpoint capture_training_state(const ModelPiece& model, const DistributedOptimizer& optimizer, int64_t step,
                                          int64_t consumed_samples, const std::string& config_yaml);
void restore_training_state(const TrainingCheckpoint& checkpoint, const std::string& source, const ModelPiece& model,
                            DistributedOptimizer& optimizer);

// ZeRO-3 (FSDP): /model holds the full weights, gathered over dp for the capture (collective:
// every dp rank captures) and freed after; the optimizer state is this rank's pieces of the
// unit shards, stored flat by name as with ZeRO-1/2. Restoring writes each piece of the saved
// weights into the unit's parameter shard (the next forward gathers them) and the optimizer
// pieces into the flat state; it needs the same dp size (the same pieces). Local to the rank.
TrainingCheckpoint capture_training_state(const ModelPiece& model, const FsdpOptimizer& optimizer, int64_t step,
                                          int64_t consumed_samples, const std::string& config_yaml);
void restore_training_state(const TrainingCheckpoint& checkpoint, const std::string& source, const ModelPiece& model,
                            FsdpOptimizer& optimizer);

// The model's weights alone (generation, evaluation); same checks as restore_training_state.
void load_model_weights(const TrainingCheckpoint& checkpoint, const std::string& source, Module& model);

}  // namespace tessera
