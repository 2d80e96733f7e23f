#include "launcher/export_source.h"

#include "core/check.h"
#include "launcher/checkpoint_argument.h"
#include "launcher/lora_checkpoint.h"
#include "launcher/train_config.h"
#include "models/gpt_model.h"

namespace tessera {

namespace {

// A LoRA run's checkpoint holds the adapters alone (launcher/lora_checkpoint.h): the base comes
// from the saved recipe's lora.base, or, without one, from the plain model of the recipe's seed
// (the LoRA model's base weights are exactly those), in the run's parameter dtype.
void add_lora_base(ExportSource& source) {
  const std::string base = source.recipe.get_string("lora.base");
  if (!base.empty()) {
    for (auto& [name, saved] :
         load_checkpoint_argument(base, "export (lora.base of the saved recipe)").checkpoint.model) {
      TS_CHECK(!source.parameters.contains(name), "export: lora.base ", base, " and the LoRA checkpoint ", source.path,
               " both hold ", name);
      source.parameters[name] = saved.value;
      if (saved.value.dim() == 2) source.trained_dtype = saved.dtype;
    }
    return;
  }
  TransformerConfig plain = source.config;
  plain.lora = {};
  const std::string precision = source.recipe.get_string("train.precision");
  const DType dtype = precision == "fp32" ? DType::F32 : precision == "fp16" ? DType::F16 : DType::BF16;
  GptModel model(plain, uint64_t(source.recipe.get_int("train.seed")), ParamOptions{dtype, Device::cpu()});
  for (const auto& [name, value] : model.named_parameters()) source.parameters[name] = value.detach().to(DType::F32);
  source.trained_dtype = dtype;
}

}  // namespace

ExportSource load_export_source(const std::string& checkpoint) {
  LoadedCheckpoint loaded = load_checkpoint_argument(checkpoint, "export");
  ExportSource source{loaded.path, Recipe::parse(loaded.checkpoint.config_yaml, loaded.path + " (saved configuration)"),
                      {},          {},
                      DType::F32,  loaded.checkpoint.step};
  source.config = model_config_from_recipe(source.recipe);
  for (auto& [name, saved] : loaded.checkpoint.model) {
    source.parameters[name] = saved.value;
    if (saved.value.dim() == 2) source.trained_dtype = saved.dtype;
  }
  if (source.config.lora.enabled()) {
    // Exports are of the plain architecture: W += (alpha / rank) B A, the adapters dropped.
    add_lora_base(source);
    merge_lora_tensors(source.parameters, source.config.lora);
    source.config.lora = {};
  }
  return source;
}

}  // namespace tessera
