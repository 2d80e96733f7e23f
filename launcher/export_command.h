// `tessera export --checkpoint PATH --format hf|gguf|trtllm --output DIR [--dtype ...]`: writes a
// training checkpoint of any layout (export_source.h) in a format inference engines load: a
// Hugging Face folder (hf_export.h; --dtype auto|f32|f16|bf16, auto = the run's parameter dtype),
// DIR/model.gguf for llama.cpp (gguf_export.h; --dtype auto|f32|f16|bf16|q8_0, auto = f16 for a
// 16-bit run, f32 otherwise) or a TensorRT-LLM checkpoint with --tp-size rank files
// (trtllm_export.h; dtypes as hf). The tokenizer is the recipe's unless --tokenizer names one;
// GGUF needs one.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace tessera {

struct ExportCommandOptions {
  std::string checkpoint;
  std::string format;
  std::string output;
  std::string dtype = "auto";
  std::string tokenizer;
  double max_shard_size_mb = 5000.0;  // hf: shard the safetensors above this
  int tp_size = 1;                    // trtllm: rank files
  bool quiet = false;                 // no progress line (tests)
};

CLI::App* add_export_subcommand(CLI::App& app, ExportCommandOptions& options);
int run_export_command(const ExportCommandOptions& options);

}  // namespace tessera
