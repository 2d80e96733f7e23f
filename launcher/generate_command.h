// `tessera generate --checkpoint PATH --prompt TEXT [--prompt TEXT ...]`: continues each prompt
// with a model loaded from a training checkpoint (a file, or a checkpoint directory whose
// latest valid checkpoint is used). The model is rebuilt from the configuration saved in the
// checkpoint; the tokenizer is the one its recipe names (data.tokenizer_model, or
// data.vocab_file + data.merge_file) unless --tokenizer gives one. Decoding keeps a KV cache
// (--no-kv-cache reruns the whole sequence per token, the slow reference); prompts run as one
// batch (models/generation.h). A row stops at the tokenizer's end-of-text token, when its new
// tokens end with the tokens of a --stop text (encoded alone), or after --max-new-tokens.
// Runs on a GPU in bf16 when there is one (--device), else on the CPU in f32.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

struct GenerateCommandOptions {
  std::string checkpoint;
  std::vector<std::string> prompts;
  std::string tokenizer;  // empty: the recipe's
  int64_t max_new_tokens = 64;
  double temperature = 1.0;  // 0: greedy
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 1234;
  std::vector<std::string> stop;
  std::string device = "auto";  // auto, cpu, cuda
  bool no_kv_cache = false;
};

CLI::App* add_generate_subcommand(CLI::App& app, GenerateCommandOptions& options);
// Prints each prompt with its continuation; returns the exit code. Errors throw tessera::Error.
int run_generate_command(const GenerateCommandOptions& options);

}  // namespace tessera
