// Preprocessing: text or JSONL files in, a Megatron .bin/.idx pair out (Megatron-LM's
// tools/preprocess_data.py without sentence splitting): one document per input line, each
// tokenized and written as one sequence, EOD appended when asked (to documents that have
// tokens, as Megatron does), uint16 tokens when the vocabulary has fewer than 65500 entries
// and int32 otherwise.
//
// Input lines: JSONL (.jsonl, .json, .ndjson, or --input-format jsonl) takes the document
// from a string field (json_key, "text" by default); text (anything else) takes the whole
// line. The newline is not part of the document. Lines that cannot be used are skipped and
// counted, never fatal: blank lines, lines that are not valid UTF-8, JSON that does not parse
// or has no such string field, and lines longer than max_document_bytes (the cap that bounds
// memory). A document whose text is empty is written as an empty document, as Megatron does.
//
// Memory stays bounded whatever the input size: a reader thread cuts the input into chunks
// of about 1 MiB of whole lines, worker threads tokenize chunks, and the calling thread
// writes results in input order as they complete (IndexedDatasetWriter streams). At most
// 2 x workers + 2 chunks are in flight, so memory is about that many chunks of text and
// tokens, plus one line of at most max_document_bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace tessera {

enum class PreprocessInputFormat { Auto, Jsonl, Text };

struct PreprocessOptions {
  std::vector<std::string> inputs;
  std::string output_prefix;
  std::string json_key = "text";
  PreprocessInputFormat format = PreprocessInputFormat::Auto;
  int workers = 1;
  bool append_eod = false;
  int64_t max_document_bytes = int64_t{64} << 20;
};

// The tokenizer seam: encode_append appends the ids of a text to `ids`. It is called from
// several worker threads at once and must be safe to (Tokenizer::encode_append is).
struct PreprocessEncoder {
  std::function<void(std::string_view text, std::vector<int32_t>& ids)> encode_append;
  int64_t vocab_size = 0;
  int32_t eod_id = -1;
};

struct PreprocessStats {
  int64_t input_bytes = 0;  // total size of the input files
  int64_t bytes_read = 0;
  int64_t lines = 0;
  int64_t documents = 0;        // written, empty ones included
  int64_t empty_documents = 0;  // text without tokens: a document with no sequence
  int64_t tokens = 0;
  int64_t blank_lines = 0;
  int64_t invalid_utf8 = 0;
  int64_t malformed_json = 0;
  int64_t missing_key = 0;  // JSON without the key, or whose value is not a string
  int64_t too_long = 0;
  std::vector<std::string> skipped_examples;  // the first few, as "file:line: reason"
  double seconds = 0.0;

  int64_t skipped() const { return invalid_utf8 + malformed_json + missing_key + too_long; }
};

// Runs the pipeline; `progress` (optional) is called from the calling thread about twice a
// second and once at the end. Throws for unusable options, unreadable inputs and write errors.
PreprocessStats preprocess_to_indexed_dataset(const PreprocessOptions& options, const PreprocessEncoder& encoder,
                                              const std::function<void(const PreprocessStats&)>& progress = {});

}  // namespace tessera
