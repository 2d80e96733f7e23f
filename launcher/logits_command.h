// `tessera logits --checkpoint PATH --tokens ROWS.npy --output LOGITS.safetensors`: the model of a
// training checkpoint (rebuilt from its saved configuration) on the token rows of a .npy file
// ([B, T] int32/int64), written as one f32 tensor "logits" [B, T, V] over the real vocabulary.
// The half of an export/import check that another tool's logits are compared against
// (tests/reference/hf_export_check.py). Runs in f32 on the CPU unless --device cuda (bf16).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace tessera {

struct LogitsCommandOptions {
  std::string checkpoint;
  std::string tokens;
  std::string output;
  std::string device = "cpu";  // cpu or cuda
};

CLI::App* add_logits_subcommand(CLI::App& app, LogitsCommandOptions& options);
int run_logits_command(const LogitsCommandOptions& options);

}  // namespace tessera
