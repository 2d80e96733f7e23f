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

// Pipeline runs (pipeline_model_parallel_size = p > 1): every (tp rank r, pp rank s) holds its
// own piece of the model, saved by its data-parallel rank 0 into `tp{r}-pp{s}-of-{n}x{p}/`
// (n = tp size, also for n = 1); with pp = 1 these are the tensor-parallel functions above.
// Resuming needs the same tp and pp sizes (and layer layout: a piece's parameters are checked by
// name when it loads).
std::string model_parallel_checkpoint_directory(const std::string& directory, int tp_rank, int tp, int pp_rank, int pp);
std::string model_parallel_resume(const std::string& resume, int tp_rank, int tp, int pp_rank, int pp);
// Throws when `directory` holds checkpoints of another (tp, pp): pipeline shard folders of other
// sizes, or (for pp > 1) tensor-parallel folders or single-rank files, or (for pp = 1) pipeline
// shard folders. Covers check_checkpoint_directory_tensor_parallel_size's cases too.
void check_checkpoint_directory_model_parallel_size(const std::string& directory, int tp, int pp,
                                                    const std::string& key);
// Throws when the checkpoint's saved recipe has another parallel.pipeline_model_parallel_size.
void check_checkpoint_pipeline_parallel_size(const TrainingCheckpoint& checkpoint, const std::string& source, int pp);

// ZeRO (parallel.zero_stage >= 1): every data-parallel rank d of n holds its own shard of the
// optimizer state, so each saves (the model and its shard) into dp{d}-of-{n}/ inside its tp
// folder and resumes from there; resuming needs the same dp size.
std::string data_parallel_checkpoint_directory(const std::string& directory, int dp_rank, int dp);
// train.resume for a ZeRO run as dp rank `dp_rank` of `dp` (after tensor_parallel_resume): auto
// and none unchanged, a directory becomes its dp folder; a single file cannot hold every shard.
std::string data_parallel_resume(const std::string& resume, int dp_rank, int dp);
// Throws when the tp folder `directory` holds ZeRO shard folders dpR-of-M of another dp size,
// or (for a ZeRO run) checkpoints without ZeRO, or (without ZeRO) ZeRO shard folders.
void check_checkpoint_directory_data_parallel_size(const std::string& directory, int dp, bool zero,
                                                   const std::string& key);

// For a ZeRO run resuming its dp folder: throws when one of the checkpoint's saved recipe and
// this run has parallel.zero_stage 3 (or parallel.fsdp) and the other not. ZeRO-3 shards the
// optimizer state by FSDP unit, ZeRO-1/2 by DDP bucket: the pieces do not carry over.
void check_checkpoint_zero_stage(const TrainingCheckpoint& checkpoint, const std::string& source, int zero_stage);

// Throws when the checkpoint's saved recipe has another parallel.tensor_model_parallel_size.
void check_checkpoint_tensor_parallel_size(const TrainingCheckpoint& checkpoint, const std::string& source, int tp);

}  // namespace tessera
