// LoRA runs' checkpoints: the adapters alone (docs/lora.md). A LoRA run's iter_NNNNNNN/ folder
// has the distributed checkpoint's format (launcher/distributed_checkpoint.h: per-rank files,
// metadata.json with the recipe, COMMIT) but holds only the adapter tensors (model/<name>) and
// their AdamW state (optimizer/exp_avg|exp_avg_sq|master/<name>, master for 16-bit parameters);
// the frozen base is the recipe's lora.base (or the seed's initialisation), which the saved
// recipe names. So a rank-8 GPT-2 124M checkpoint is ~14 MB instead of ~1.5 GB.
// Tensors are stored whole: a tensor-parallel adapter factor (column-parallel B split by rows,
// SwiGLU fc1's B by gate and up blocks; row-parallel A split by columns) is written by every tp
// rank as its box of the whole, the replicated factors by tp rank 0, everything by dp rank 0,
// so a checkpoint saved with one tp size resumes with another.
#pragma once

#include "launcher/checkpoint_sharding.h"

namespace tessera {

// This rank's adapter pieces and their optimizer state (host f32 copies) and its dropout streams.
RankCheckpoint capture_lora_checkpoint(const GptModel& model, const AdamW& optimizer, const CheckpointRank& at);

// Puts the adapters and their optimizer state (and its step count) back, from a LoRA checkpoint
// of any tensor-parallel size. A checkpoint without them (a plain run's) is refused naming the
// first missing adapter tensor.
void restore_lora_checkpoint(CheckpointReader& reader, const GptModel& model, AdamW& optimizer);

// W += (alpha / rank) B A for every adapter of `parameters` (single-rank names, host f32, as
// assemble_model gives them: the base's tensors and the adapters'); the adapter tensors are
// removed, so what is left is the plain model's parameters with the adapters merged in.
void merge_lora_tensors(std::map<std::string, Tensor>& parameters, const LoraConfig& lora);

}  // namespace tessera
