// A directory of single-rank checkpoint files (launcher/checkpoint.h; `tessera import` writes one,
// generate/logits/export read them), one per step, named like Megatron's iterations:
// iter_0000010.h5. This file saves into it atomically, keeps the last N, and finds the latest
// valid one. (Training's own checkpoints are folders: launcher/distributed_checkpoint.h.)
//
// Saving writes iter_0000010.h5.tmp in the same directory, fsyncs it, renames it into place
// and fsyncs the directory, so after a crash at any point the directory holds every earlier
// checkpoint intact plus either no new one or a complete one. Older checkpoints are deleted
// only after that. A failed save removes its temporary file and throws; no existing
// checkpoint is touched.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "launcher/checkpoint.h"

namespace tessera {

using CheckpointWarn = std::function<void(const std::string& message)>;

std::string checkpoint_file_name(int64_t step);  // iter_0000010.h5

// Flushes a file's or a directory's contents (a rename lives in its directory) to the disk.
void sync_to_disk(const std::string& path, bool directory);

struct CheckpointFileEntry {
  std::string path;
  int64_t step = 0;
};
// The iter_NNNNNNN.h5 files of `directory`, lowest step first; none when it does not exist.
std::vector<CheckpointFileEntry> list_checkpoints(const std::string& directory);

struct SavedCheckpoint {
  std::string path;
  uintmax_t bytes = 0;
  double seconds = 0.0;              // writing, syncing and renaming
  std::vector<std::string> removed;  // older checkpoints deleted to keep the last keep_last
};
// Saves as iter_<step>.h5 in `directory` (created when missing). `warn` hears about older
// checkpoints that could not be deleted (the save itself still succeeded).
SavedCheckpoint save_checkpoint(const std::string& directory, const TrainingCheckpoint& checkpoint, int64_t keep_last,
                                const CheckpointWarn& warn);

struct LoadedCheckpoint {
  std::string path;
  TrainingCheckpoint checkpoint;
};
// The newest checkpoint of `directory` that reads completely; each newer one that does not
// (truncated, corrupt) is skipped with a warning naming it. Nothing when there are no
// checkpoints; throws when there are some but none reads.
std::optional<LoadedCheckpoint> load_latest_checkpoint(const std::string& directory, const CheckpointWarn& warn);

}  // namespace tessera
