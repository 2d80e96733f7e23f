// The `--checkpoint PATH` argument of the commands that read a trained model (generate, export,
// logits): a distributed checkpoint folder iter_NNNNNNN/ of any parallel layout (its pieces are
// assembled into the single-rank model: launcher/distributed_checkpoint.h), a single-rank file
// iter_NNNNNNN.h5 (launcher/checkpoint.h, as `tessera import` writes), or a directory whose newest
// committed folder (else its latest valid file) is used. Only the model, recipe and step are read.
#pragma once

#include <string>
#include <string_view>

#include "launcher/checkpoint_directory.h"

namespace tessera {

// `command` names the caller in errors ("generate: --checkpoint ...").
LoadedCheckpoint load_checkpoint_argument(const std::string& path, std::string_view command);

}  // namespace tessera
