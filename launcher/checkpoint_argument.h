// The `--checkpoint PATH` argument of the commands that read a trained model (generate, export,
// logits): a checkpoint file, or a checkpoint directory whose latest valid checkpoint is used.
// Shard folders (tensor-parallel tpR-of-N, ZeRO dpR-of-N) are refused with the way out: these
// commands read single-rank checkpoints.
#pragma once

#include <string>
#include <string_view>

#include "launcher/checkpoint_directory.h"

namespace tessera {

// `command` names the caller in errors ("generate: --checkpoint ...").
LoadedCheckpoint load_checkpoint_argument(const std::string& path, std::string_view command);

}  // namespace tessera
