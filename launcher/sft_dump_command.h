// `tessera sft-dump`: reads chat JSONL the way SFT training does (data/sft_dataset.h), prints
// the packing report and one or more packed rows with the loss mask visible (one line per
// position: token, its text, its label, '*' where the loss is taken), to check a chat template
// and its mask before training. The template is a family (--template gpt2 | llama3), optionally
// with any of its format strings replaced (--format-user "Q: {content}\n", ...).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace tessera {

struct SftDumpCommandOptions {
  std::vector<std::string> inputs;  // JSONL files
  std::string tokenizer;            // tokenizer.json or a folder of tokenizer files
  std::string eod_token;            // empty: the tokenizer's own
  std::string chat_template = "gpt2";
  std::string format_begin, format_system, format_user, format_assistant;  // empty: the family's
  int64_t seq_length = 1024;
  std::string packing = "first_fit";
  std::string overflow = "skip";
  uint64_t seed = 1234;
  bool no_shuffle = false;
  int64_t row = 0;   // first row printed
  int64_t rows = 1;  // rows printed
};

CLI::App* add_sft_dump_subcommand(CLI::App& app, SftDumpCommandOptions& options);
// Prints the report and the rows; returns the exit code. Bad input throws tessera::Error.
int run_sft_dump_command(const SftDumpCommandOptions& options);

}  // namespace tessera
