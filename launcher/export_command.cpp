#include "launcher/export_command.h"

#include <fmt/format.h>

#include "core/check.h"
#include "launcher/export_source.h"
#include "launcher/export_tokenizer.h"
#include "launcher/gguf_export.h"
#include "launcher/hf_export.h"
#include "launcher/peft_export.h"
#include "launcher/trtllm_export.h"

namespace tessera {
namespace {

// --dtype for the formats that take f32, f16 and bf16 (hf, trtllm).
DType float_dtype(const std::string& format, const std::string& name, DType trained) {
  if (name == "auto") return trained;
  TS_CHECK(name == "f32" || name == "f16" || name == "bf16", "export: --dtype ", name, " is not one --format ", format,
           " takes (auto, f32, f16, bf16)");
  return dtype_from_name(name);
}

GgmlType gguf_type(const std::string& name, DType trained) {
  if (name == "auto") return trained == DType::F32 ? GgmlType::F32 : GgmlType::F16;
  if (name == "f32") return GgmlType::F32;
  if (name == "f16") return GgmlType::F16;
  if (name == "bf16") return GgmlType::BF16;
  TS_CHECK(name == "q8_0", "export: --dtype ", name, " is not one --format gguf takes (auto, f32, f16, bf16, q8_0)");
  return GgmlType::Q8_0;
}

}  // namespace

CLI::App* add_export_subcommand(CLI::App& app, ExportCommandOptions& options) {
  CLI::App* command =
      app.add_subcommand("export",
                         "Write a checkpoint as a Hugging Face folder, a GGUF file, a TensorRT-LLM checkpoint or "
                         "(a LoRA run's adapters) a PEFT adapter folder");
  command->add_option("--checkpoint", options.checkpoint, "checkpoint file, or a checkpoint directory (its latest)")
      ->required();
  command->add_option("--format", options.format, "hf, gguf, trtllm or peft")
      ->required()
      ->check(CLI::IsMember({"hf", "gguf", "trtllm", "peft"}));
  command->add_option("--output", options.output, "output folder (gguf: DIR/model.gguf)")->required();
  command->add_option("--dtype", options.dtype, "auto, f32, f16, bf16 (gguf also q8_0)")->capture_default_str();
  command->add_option("--tokenizer", options.tokenizer,
                      "tokenizer.json or a folder of tokenizer files (default: the recipe's)");
  command->add_option("--max-shard-size", options.max_shard_size_mb, "hf: safetensors shard size limit in MB")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  command->add_option("--tp-size", options.tp_size, "trtllm: tensor-parallel ranks (one rank file each)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  command->add_flag("--quiet", options.quiet, "no progress line");
  return command;
}

int run_export_command(const ExportCommandOptions& options) {
  TS_CHECK(options.format == "hf" || options.format == "gguf" || options.format == "trtllm" || options.format == "peft",
           "export: --format ", options.format, " is not one of hf, gguf, trtllm, peft");
  if (options.format == "peft") {  // the adapters alone; the base is exported separately (hf)
    const DType dtype = float_dtype("peft", options.dtype, DType::F32);
    export_peft(options.checkpoint, options.output, dtype);
    if (!options.quiet)
      fmt::print("tessera export: {} -> {} (PEFT LoRA adapter, {})\n", options.checkpoint, options.output,
                 dtype_name(dtype));
    return 0;
  }
  const ExportSource source = load_export_source(options.checkpoint);
  const std::optional<ExportTokenizer> tokenizer = find_export_tokenizer(options.tokenizer, source.recipe);
  if (tokenizer) {
    TS_CHECK(tokenizer->vocab_size <= source.config.vocab_size, "export: the tokenizer's ", tokenizer->vocab_size,
             " tokens do not fit the model's vocabulary of ", source.config.vocab_size,
             " (a tokenizer other than training's? pass --tokenizer)");
  }
  std::FILE* progress = options.quiet ? nullptr : stderr;
  const std::filesystem::path output(options.output);
  if (options.format == "hf") {
    if (!tokenizer)
      fmt::print(stderr, "warning: {} names no tokenizer: the export has none (pass --tokenizer PATH)\n", source.path);
    const DType dtype = float_dtype("hf", options.dtype, source.trained_dtype);
    export_hf(source, tokenizer, output, {dtype, uint64_t(options.max_shard_size_mb * 1e6), progress});
    if (!options.quiet)
      fmt::print("tessera export: {} (step {}) -> {} (transformers, {})\n", source.path, source.step, output.string(),
                 dtype_name(dtype));
  } else if (options.format == "trtllm") {
    const DType dtype = float_dtype("trtllm", options.dtype, source.trained_dtype);
    export_trtllm(source, output, {dtype, options.tp_size, progress});
    if (!options.quiet)
      fmt::print("tessera export: {} (step {}) -> {} (TensorRT-LLM checkpoint, tp {}, {})\n", source.path, source.step,
                 output.string(), options.tp_size, dtype_name(dtype));
  } else {
    TS_CHECK(tokenizer.has_value(), "export: ", source.path,
             " names no tokenizer and GGUF embeds one: pass --tokenizer PATH (a tokenizer.json or a folder of "
             "tokenizer files)");
    const GgmlType type = gguf_type(options.dtype, source.trained_dtype);
    export_gguf(source, *tokenizer, output / "model.gguf", type, progress);
    if (!options.quiet)
      fmt::print("tessera export: {} (step {}) -> {} (GGUF)\n", source.path, source.step,
                 (output / "model.gguf").string());
  }
  return 0;
}

}  // namespace tessera
