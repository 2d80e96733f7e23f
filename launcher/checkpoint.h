// A single-rank checkpoint file: what `tessera import` writes and generate/logits/export read
// (training saves distributed checkpoints instead: launcher/distributed_checkpoint.h, which the
// same commands read assembled into this form). Its HDF5 layout (format version 1):
//
//   /                           attrs format = "tessera-checkpoint", format_version = 1,
//                                     config = the run's resolved recipe YAML
//   /model/<parameter name>     f32 dataset of the parameter's shape; attr dtype = its dtype
//                                     in the run ("bf16", "f32", ...)
//   /optimizer                  attr steps_taken (AdamW's bias-correction step count)
//   /optimizer/exp_avg/<name>   f32, AdamW's first moment
//   /optimizer/exp_avg_sq/<name> f32, AdamW's second moment
//   /optimizer/master/<name>    f32 master weight, only for parameters that are not f32
//                                     (an f32 parameter is its own master: /model holds it)
//   /scheduler                  attr step: optimizer steps completed (the iteration; the LR
//                                     schedule is a function of it)
//   /rng                        attrs dropout_seed, dropout_offset (the model's Philox stream);
//                                     with tensor parallelism also model_parallel_seed,
//                                     model_parallel_offset (this tp rank's own stream,
//                                     parallel/rng_tracker.h)
//                               interleaved pipelines (vpp > 1): those are chunk 0's; chunk k >= 1
//                                     adds chunk<k>_dropout_seed, chunk<k>_dropout_offset (and
//                                     chunk<k>_model_parallel_seed, _offset with tp)
//   /data                       attr consumed_samples (the training loader's position)
//   /loss_scaler                attrs scale (f64), clean_steps, skipped_steps (fp16 dynamic
//                                     loss scaling; present and unused in bf16/f32 runs)
//
// Parameter names are the model's stable names (models/gpt_model.h). Readers refuse a file
// whose format or version they do not know. Here the file is written and read in place;
// checkpoint_directory.h makes saving atomic and picks the checkpoint to resume from.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"
#include "optim/loss_scaler.h"

namespace tessera {

inline constexpr int64_t kCheckpointFormatVersion = 1;

// A parameter's value as stored (f32, on the host) and its dtype in the run that saved it.
struct SavedParameter {
  Tensor value;
  DType dtype = DType::F32;
};

struct OptimizerCheckpoint {
  int64_t steps_taken = 0;
  // By parameter name; master only where the master is separate from the parameter.
  std::map<std::string, Tensor> exp_avg;
  std::map<std::string, Tensor> exp_avg_sq;
  std::map<std::string, Tensor> master;
};

struct TrainingCheckpoint {
  std::string config_yaml;
  int64_t step = 0;
  std::map<std::string, SavedParameter> model;
  OptimizerCheckpoint optimizer;
  PhiloxState dropout_rng;
  std::optional<PhiloxState> model_parallel_rng;  // tensor-parallel shards only
  // An interleaved pipeline rank's chunks after the first (chunk 1 first); each chunk has its own
  // streams. model_parallel is empty without tensor parallelism.
  std::vector<PhiloxState> chunk_dropout_rngs;
  std::vector<PhiloxState> chunk_model_parallel_rngs;
  int64_t consumed_samples = 0;
  LossScalerState loss_scaler;
};

// Writes `checkpoint` to `path` (replacing it; not atomic by itself).
void write_checkpoint_file(const std::string& path, const TrainingCheckpoint& checkpoint);
// Reads the whole checkpoint into host f32 tensors. Throws naming the file and the first
// object that is missing, truncated or fails its checksum.
TrainingCheckpoint read_checkpoint_file(const std::string& path);

}  // namespace tessera
