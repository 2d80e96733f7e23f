#include "launcher/preprocess_command.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "core/check.h"
#include "data/indexed_dataset.h"
#include "data/tokenizer.h"

namespace tessera {
namespace {

Tokenizer load_tokenizer(const PreprocessCommandOptions& options) {
  const bool by_files = !options.vocab_file.empty() || !options.merge_file.empty();
  TS_CHECK(by_files != !options.tokenizer.empty(),
           "preprocess: give the tokenizer either as --tokenizer PATH or as --vocab-file FILE --merge-file FILE");
  if (!by_files) return Tokenizer::load(options.tokenizer, options.eod_token);
  TS_CHECK(!options.vocab_file.empty() && !options.merge_file.empty(),
           "preprocess: --vocab-file and --merge-file go together (GPT-2's encoder.json/vocab.json and "
           "vocab.bpe/merges.txt)");
  return Tokenizer::load(options.vocab_file, options.merge_file, options.eod_token);
}

PreprocessInputFormat parse_input_format(const std::string& name) {
  if (name == "auto") return PreprocessInputFormat::Auto;
  if (name == "jsonl") return PreprocessInputFormat::Jsonl;
  TS_CHECK(name == "text", "preprocess: --input-format '", name, "' is not one of auto, jsonl, text");
  return PreprocessInputFormat::Text;
}

std::string skipped_summary(const PreprocessStats& stats) {
  std::string parts;
  auto add = [&](int64_t count, const char* what) {
    if (count == 0) return;
    parts += fmt::format("{}{} {}", parts.empty() ? "" : ", ", count, what);
  };
  add(stats.malformed_json, "not valid JSON");
  add(stats.invalid_utf8, "not valid UTF-8");
  add(stats.missing_key, "without the JSON key");
  add(stats.too_long, "longer than --max-document-bytes");
  return parts;
}

}  // namespace

CLI::App* add_preprocess_subcommand(CLI::App& app, PreprocessCommandOptions& options) {
  CLI::App* command =
      app.add_subcommand("preprocess", "Tokenize text or JSONL files into a Megatron .bin/.idx indexed dataset");
  PreprocessOptions& p = options.preprocess;
  command->add_option("--input", p.inputs, "input files: JSONL (.jsonl/.json/.ndjson) or text, one document per line")
      ->required();
  command->add_option("--output,--output-prefix", p.output_prefix, "output prefix: writes PREFIX.bin and PREFIX.idx")
      ->required();
  command->add_option("--tokenizer", options.tokenizer,
                      "tokenizer.json, or a folder with tokenizer.json, encoder.json + vocab.bpe or vocab.json + "
                      "merges.txt");
  command->add_option("--vocab-file", options.vocab_file, "GPT-2 encoder.json / vocab.json (with --merge-file)");
  command->add_option("--merge-file", options.merge_file, "GPT-2 vocab.bpe / merges.txt (with --vocab-file)");
  command->add_option("--json-key", p.json_key, "JSON field holding the document text")->capture_default_str();
  command->add_option("--input-format", options.input_format, "auto (by extension), jsonl or text")
      ->capture_default_str();
  command->add_option("--workers", p.workers, "tokenizer threads")->capture_default_str();
  command->add_flag("--append-eod", p.append_eod, "append the end-of-document token to every document");
  command->add_option("--eod-token", options.eod_token, "end-of-document token (default: the tokenizer's own)");
  command
      ->add_option("--max-document-bytes", p.max_document_bytes,
                   "skip (and count) lines longer than this; bounds memory")
      ->capture_default_str();
  return command;
}

std::string format_preprocess_progress(const PreprocessStats& stats) {
  const double seconds = stats.seconds > 0 ? stats.seconds : 1e-9;
  const double percent =
      stats.input_bytes > 0 ? 100.0 * static_cast<double>(stats.bytes_read) / stats.input_bytes : 100;
  std::string line =
      fmt::format("{:.2f}/{:.2f} GB ({:.0f}%)  {:.1f} MB/s  {:.0f} docs/s  {} documents  {} tokens",
                  stats.bytes_read / 1e9, stats.input_bytes / 1e9, percent, stats.bytes_read / 1e6 / seconds,
                  stats.documents / seconds, stats.documents, stats.tokens);
  if (stats.skipped() > 0) line += fmt::format("  {} lines skipped", stats.skipped());
  return line;
}

int run_preprocess_command(const PreprocessCommandOptions& options) {
  PreprocessOptions preprocess = options.preprocess;
  preprocess.format = parse_input_format(options.input_format);
  const Tokenizer tokenizer = load_tokenizer(options);
  PreprocessEncoder encoder;
  encoder.encode_append = [&tokenizer](std::string_view text, std::vector<int32_t>& ids) {
    tokenizer.encode_append(text, ids);
  };
  encoder.vocab_size = tokenizer.vocab_size();
  encoder.eod_id = preprocess.append_eod ? tokenizer.eod_id() : -1;
  const IndexedDType dtype = indexed_dtype_for_vocab_size(encoder.vocab_size);
  fmt::print("tessera preprocess: {} input file(s) -> {}.bin/.idx, vocabulary {} ({} tokens), {} worker(s){}\n",
             preprocess.inputs.size(), preprocess.output_prefix, encoder.vocab_size, indexed_dtype_name(dtype),
             preprocess.workers, preprocess.append_eod ? ", EOD appended" : "");
  std::fflush(stdout);

  const bool terminal = ::isatty(STDERR_FILENO) != 0;
  double last_line_at = 0.0;
  auto progress = [&](const PreprocessStats& stats) {
    if (terminal) {
      fmt::print(stderr, "\rpreprocess: {}   ", format_preprocess_progress(stats));
    } else if (stats.seconds - last_line_at >= 10.0) {
      fmt::print(stderr, "preprocess: {}\n", format_preprocess_progress(stats));
      last_line_at = stats.seconds;
    }
    std::fflush(stderr);
  };
  PreprocessStats stats = preprocess_to_indexed_dataset(preprocess, encoder, progress);
  if (terminal) fmt::print(stderr, "\n");

  fmt::print(
      "tessera preprocess: wrote {} documents, {} tokens to {}.bin/.idx in {:.1f} s ({:.1f} MB/s, {:.0f} docs/s)\n",
      stats.documents, stats.tokens, preprocess.output_prefix, stats.seconds, stats.bytes_read / 1e6 / stats.seconds,
      stats.documents / stats.seconds);
  if (stats.empty_documents > 0) {
    fmt::print("tessera preprocess: {} documents had no tokens (written empty, as Megatron does)\n",
               stats.empty_documents);
  }
  if (stats.skipped() > 0) {
    fmt::print("tessera preprocess: warning: skipped {} of {} lines ({}); first: {}\n", stats.skipped(), stats.lines,
               skipped_summary(stats), fmt::join(stats.skipped_examples, "; "));
  }
  return 0;
}

}  // namespace tessera
