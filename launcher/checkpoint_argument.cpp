#include "launcher/checkpoint_argument.h"

#include <fmt/format.h>

#include <filesystem>
#include <optional>

#include "core/check.h"

namespace tessera {

LoadedCheckpoint load_checkpoint_argument(const std::string& path, std::string_view command) {
  TS_CHECK(std::filesystem::exists(path), command, ": --checkpoint ", path,
           " does not exist (give a checkpoint file iter_NNNNNNN.h5 or the run's checkpoint.save directory)");
  if (!std::filesystem::is_directory(path)) return {path, read_checkpoint_file(path)};
  for (const auto& entry : std::filesystem::directory_iterator(path)) {
    const std::string name = entry.path().filename().string();
    TS_CHECK(!(entry.is_directory() && (name.starts_with("tp") || name.starts_with("dp"))), command,
             ": --checkpoint ", path, " holds shard folders (", name,
             "): this command reads single-rank checkpoints; pass the shard folder of a tp = 1 run's dp0-of-N, or "
             "merge tensor-parallel shards first");
  }
  std::optional<LoadedCheckpoint> latest =
      load_latest_checkpoint(path, [](const std::string& message) { fmt::print(stderr, "warning: {}\n", message); });
  TS_CHECK(latest.has_value(), command, ": --checkpoint ", path, " holds no checkpoint (iter_NNNNNNN.h5)");
  return std::move(*latest);
}

}  // namespace tessera
