// What `tessera export` reads: a training checkpoint (a file iter_NNNNNNN.h5, or a checkpoint
// directory whose latest valid checkpoint is used), its model configuration rebuilt from the
// saved recipe, and its parameters as host f32 tensors in the single-rank layout.
#pragma once

#include <map>
#include <string>

#include "core/tensor.h"
#include "launcher/recipe.h"
#include "models/transformer_config.h"

namespace tessera {

struct ExportSource {
  std::string path;  // the checkpoint file read
  Recipe recipe;     // the saved configuration
  TransformerConfig config;
  std::map<std::string, Tensor> parameters;  // f32, host, padded vocabulary
  DType trained_dtype = DType::F32;          // the parameters' dtype in the run
  int64_t step = 0;
};

ExportSource load_export_source(const std::string& checkpoint);

}  // namespace tessera
