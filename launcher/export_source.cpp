#include "launcher/export_source.h"

#include <fmt/format.h>

#include <filesystem>

#include "core/check.h"
#include "launcher/checkpoint_directory.h"
#include "launcher/train_config.h"

namespace tessera {

ExportSource load_export_source(const std::string& checkpoint) {
  TS_CHECK(std::filesystem::exists(checkpoint), "export: --checkpoint ", checkpoint,
           " does not exist (give a checkpoint file iter_NNNNNNN.h5 or the run's checkpoint.save directory)");
  LoadedCheckpoint loaded;
  if (std::filesystem::is_directory(checkpoint)) {
    for (const auto& entry : std::filesystem::directory_iterator(checkpoint)) {
      const std::string name = entry.path().filename().string();
      TS_CHECK(!(entry.is_directory() && (name.starts_with("tp") || name.starts_with("dp"))), "export: --checkpoint ",
               checkpoint, " holds shard folders (", name,
               "): export reads single-rank checkpoints; pass the shard folder of a tp = 1 run's "
               "dp0-of-N, or merge tensor-parallel shards first");
    }
    std::optional<LoadedCheckpoint> latest = load_latest_checkpoint(
        checkpoint, [](const std::string& message) { fmt::print(stderr, "warning: {}\n", message); });
    TS_CHECK(latest.has_value(), "export: --checkpoint ", checkpoint, " holds no checkpoint (iter_NNNNNNN.h5)");
    loaded = std::move(*latest);
  } else {
    loaded = {checkpoint, read_checkpoint_file(checkpoint)};
  }
  ExportSource source{loaded.path, Recipe::parse(loaded.checkpoint.config_yaml, loaded.path + " (saved configuration)"),
                      {}, {}, DType::F32, loaded.checkpoint.step};
  source.config = model_config_from_recipe(source.recipe);
  for (auto& [name, saved] : loaded.checkpoint.model) {
    source.parameters[name] = saved.value;
    if (saved.value.dim() == 2) source.trained_dtype = saved.dtype;
  }
  return source;
}

}  // namespace tessera
