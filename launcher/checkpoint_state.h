// Moves training state between the live objects of a run (the model's parameters and dropout
// stream, AdamW's state, the step and the loader position) and a TrainingCheckpoint.
// Restoring first checks that the checkpoint holds exactly the model's parameters, by name and
// shape, and names the first one that differs.
#pragma once

#include <string>

#include "launcher/checkpoint.h"
#include "models/gpt_model.h"
#include "optim/adamw.h"
#include "optim/distributed_optimizer.h"

namespace tessera {

// The optimizer must have been built over model.parameters() (same order). Tensors that are
// already f32 on the host are shared, not copied: write the checkpoint before the next step.
TrainingCheckpoint capture_training_state(const GptModel& model, const AdamW& optimizer, int64_t step,
                                          int64_t consumed_samples, const std::string& config_yaml);

// `source` names the checkpoint in errors (its path).
void restore_training_state(const TrainingCheckpoint& checkpoint, const std::string& source, GptModel& model,
                            AdamW& optimizer);

// ZeRO: the optimizer state holds only this data-parallel rank's pieces (optim/
// distributed_optimizer.h), each stored flat under its parameter's name (/optimizer/master,
// exp_avg, exp_avg_sq: 1-D, the piece's length). Restoring needs the same pieces: the same dp
// size and bucket layout (parallel.ddp_bucket_size_mb); any other is refused naming the parameter.
TrainingCheckpoint capture_training_state(const GptModel& model, const DistributedOptimizer& optimizer, int64_t step,
                                          int64_t consumed_samples, const std::string& config_yaml);
void restore_training_state(const TrainingCheckpoint& checkpoint, const std::string& source, GptModel& model,
                            DistributedOptimizer& optimizer);

// The model's weights alone (generation, evaluation); same checks as restore_training_state.
void load_model_weights(const TrainingCheckpoint& checkpoint, const std::string& source, Module& model);

}  // namespace tessera
