// What `tessera export` reads: a training checkpoint of any parallel layout (a distributed
// checkpoint folder iter_NNNNNNN/ assembled into the single-rank model, a single-rank file
// iter_NNNNNNN.h5, or a checkpoint directory's newest: launcher/checkpoint_argument.h), its model
// configuration rebuilt from the saved recipe, and its parameters as host f32 tensors in the
// single-rank layout. A LoRA run's checkpoint (adapters only) is merged into its base (lora.base of
// the saved recipe, or the seed's plain model): the source is the plain model with W + (alpha /
// rank) B A, so every export format writes the fine-tuned model without knowing of LoRA.
#pragma once

#include <map>
#include <string>

#include "core/tensor.h"
#include "launcher/recipe.h"
#include "models/transformer_config.h"

namespace tessera {

struct ExportSource {
  std::string path;  // the checkpoint folder or file read
  Recipe recipe;     // the saved configuration
  TransformerConfig config;
  std::map<std::string, Tensor> parameters;  // f32, host, padded vocabulary
  DType trained_dtype = DType::F32;          // the parameters' dtype in the run
  int64_t step = 0;
};

ExportSource load_export_source(const std::string& checkpoint);

}  // namespace tessera
