#include "launcher/checkpoint_argument.h"

#include <fmt/format.h>

#include <filesystem>
#include <optional>

#include "core/check.h"
#include "launcher/checkpoint_sharding.h"
#include "launcher/distributed_checkpoint.h"

namespace tessera {

namespace {

// The single-rank model (and the recipe and step) assembled from a distributed checkpoint folder.
LoadedCheckpoint assemble(const std::string& folder) {
  CheckpointReader reader(folder);
  LoadedCheckpoint loaded{folder, {}};
  loaded.checkpoint.config_yaml = reader.metadata().config_yaml;
  loaded.checkpoint.step = reader.metadata().step;
  loaded.checkpoint.consumed_samples = reader.metadata().consumed_samples;
  loaded.checkpoint.model = assemble_model(reader);
  return loaded;
}

}  // namespace

LoadedCheckpoint load_checkpoint_argument(const std::string& path, std::string_view command) {
  TS_CHECK(std::filesystem::exists(path), command, ": --checkpoint ", path,
           " does not exist (give a checkpoint folder iter_NNNNNNN/, a file iter_NNNNNNN.h5, or the run's "
           "checkpoint.save directory)");
  if (!std::filesystem::is_directory(path)) return {path, read_checkpoint_file(path)};
  if (is_distributed_checkpoint(path)) return assemble(path);
  std::vector<CheckpointEntry> folders = list_checkpoint_folders(path);
  for (auto folder = folders.rbegin(); folder != folders.rend(); ++folder) {
    if (folder->committed) return assemble(folder->path);
    fmt::print(stderr, "warning: {} has no COMMIT marker (a save that did not finish); skipping it\n", folder->path);
  }
  std::optional<LoadedCheckpoint> latest =
      load_latest_checkpoint(path, [](const std::string& message) { fmt::print(stderr, "warning: {}\n", message); });
  TS_CHECK(latest.has_value(), command, ": --checkpoint ", path,
           " holds no checkpoint (committed iter_NNNNNNN/ folders or iter_NNNNNNN.h5 files)");
  return std::move(*latest);
}

}  // namespace tessera
