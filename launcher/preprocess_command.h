// `tessera preprocess`: tokenizes text or JSONL files into a Megatron .bin/.idx pair
// (data/preprocess.h has the pipeline and its rules). Options follow Megatron-LM's
// tools/preprocess_data.py where they overlap (--input, --json-key, --output-prefix as
// --output, --workers, --append-eod, --vocab-file + --merge-file); the tokenizer is a path
// (--tokenizer: tokenizer.json, or a folder with tokenizer.json, encoder.json + vocab.bpe, or
// vocab.json + merges.txt). Progress goes to stderr (one updating line on a terminal, a line
// every 10 s otherwise); the summary and the skipped-line warning go to stdout.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "data/preprocess.h"

namespace tessera {

struct PreprocessCommandOptions {
  PreprocessOptions preprocess;
  std::string input_format = "auto";  // auto, jsonl, text
  std::string tokenizer;              // a tokenizer.json or a folder of tokenizer files
  std::string vocab_file;             // with merge_file: GPT-2 files given one by one
  std::string merge_file;
  std::string eod_token;  // empty: the tokenizer's own (<|endoftext|>, ...)
};

CLI::App* add_preprocess_subcommand(CLI::App& app, PreprocessCommandOptions& options);

// Loads the tokenizer, runs the pipeline with progress, prints the summary; returns the exit
// code. Errors (bad options, unreadable files, unknown tokenizer layouts) throw tessera::Error.
int run_preprocess_command(const PreprocessCommandOptions& options);

// One progress line: "1.20/4.00 GB (30%)  45.6 MB/s  1234 docs/s  12345 documents  ...".
std::string format_preprocess_progress(const PreprocessStats& stats);

}  // namespace tessera
