#include "launcher/export_source.h"

#include "core/check.h"
#include "launcher/checkpoint_argument.h"
#include "launcher/train_config.h"

namespace tessera {

ExportSource load_export_source(const std::string& checkpoint) {
  LoadedCheckpoint loaded = load_checkpoint_argument(checkpoint, "export");
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
