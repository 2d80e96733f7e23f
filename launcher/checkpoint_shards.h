// Checkpoints of tensor-parallel runs. With tensor_model_parallel_size = n > 1 every tp rank
// holds its own shard of the model and optimizer, so data-parallel rank 0 of each tp rank r saves
// its shard into its own folder of checkpoint.save, `tp{r}-of-{n}/iter_NNNNNNN.h5`, with the
// usual atomic save and keep_last (checkpoint_directory.h) per folder. With tp = 1 the folder is
// checkpoint.save itself, so single-rank checkpoints are exactly what they always were.
// Resuming needs the tp size the checkpoint was saved with; these checks say so in one line
// instead of starting from scratch or failing on the first mismatched parameter shape.
#pragma once

#include <string>

#include "launcher/checkpoint.h"

namespace tessera {

// The folder tp rank `tp_rank` of `tp` saves into and resumes from (`directory` when tp = 1).
std::string tensor_parallel_checkpoint_directory(const std::string& directory, int tp_rank, int tp);

// train.resume as tp rank `tp_rank` of `tp` reads it: auto and none unchanged, a checkpoint
// directory becomes its shard folder; a single file names one shard, so it needs tp = 1.
std::string tensor_parallel_resume(const std::string& resume, int tp_rank, int tp);

// Throws when `directory` holds checkpoints of another tp size: shard folders tpR-of-N with
// N != tp, or (for tp > 1) single-rank iter_NNNNNNN.h5 files. `key` names the recipe key.
void check_checkpoint_directory_tensor_parallel_size(const std::string& directory, int tp, const std::string& key);

// Throws when the checkpoint's saved recipe has another parallel.tensor_model_parallel_size.
void check_checkpoint_tensor_parallel_size(const TrainingCheckpoint& checkpoint, const std::string& source, int tp);

}  // namespace tessera
