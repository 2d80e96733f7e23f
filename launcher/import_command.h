// `tessera import --format hf --input DIR --output CKPT_DIR`: a Hugging Face GPT-2 or Llama
// folder -> a Tessera checkpoint (hf_import.h) that `tessera generate --checkpoint CKPT_DIR`
// and fine-tuning start from.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace tessera {

struct ImportCommandOptions {
  std::string format = "hf";
  std::string input;
  std::string output;
  bool quiet = false;
};

CLI::App* add_import_subcommand(CLI::App& app, ImportCommandOptions& options);
int run_import_command(const ImportCommandOptions& options);

}  // namespace tessera
