#include "data/preprocess.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <system_error>
#include <thread>

#include "core/check.h"
#include "data/bpe_utf8.h"
#include "data/indexed_dataset_writer.h"
#include "data/preprocess_input.h"

namespace tessera {
namespace {

constexpr int64_t kChunkBytes = int64_t{1} << 20;
constexpr size_t kSkippedExamples = 5;

enum class LineOutcome { Document, Blank, InvalidUtf8, MalformedJson, MissingKey };

// The document text of one input line, or why the line is skipped. For JSONL the text is
// moved out of the parsed value into `scratch`.
LineOutcome document_of_line(std::string_view line, bool jsonl, const std::string& key, std::string& scratch,
                             std::string_view& text) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.find_first_not_of(" \t") == std::string_view::npos) return LineOutcome::Blank;
  if (valid_utf8_prefix_length(line) != line.size()) return LineOutcome::InvalidUtf8;
  if (!jsonl) {
    text = line;
    return LineOutcome::Document;
  }
  nlohmann::json value = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return LineOutcome::MalformedJson;
  if (!value.is_object()) return LineOutcome::MissingKey;
  auto field = value.find(key);
  if (field == value.end() || !field->is_string()) return LineOutcome::MissingKey;
  scratch = std::move(field->get_ref<std::string&>());
  text = scratch;
  return LineOutcome::Document;
}

// A chunk's documents, tokenized: their tokens back to back, each document's length, and the
// chunk's share of the counts.
struct ChunkResult {
  std::vector<int32_t> tokens;
  std::vector<int64_t> document_lengths;
  PreprocessStats counts;
};

void count_skip(PreprocessStats& counts, int64_t& counter, const std::string& file, int64_t line,
                const std::string& reason) {
  ++counter;
  if (counts.skipped_examples.size() < kSkippedExamples) {
    counts.skipped_examples.push_back(file + ":" + std::to_string(line) + ": " + reason);
  }
}

ChunkResult tokenize_chunk(const InputChunk& chunk, bool jsonl, const std::string& file,
                           const PreprocessOptions& options, const PreprocessEncoder& encoder) {
  ChunkResult result;
  PreprocessStats& counts = result.counts;
  counts.bytes_read = chunk.raw_bytes;
  counts.lines = static_cast<int64_t>(chunk.line_count() + chunk.too_long_lines.size());
  const std::string key_reason = "no string field \"" + options.json_key + "\"";
  const std::string long_reason =
      "longer than the " + std::to_string(options.max_document_bytes) + "-byte document limit (--max-document-bytes)";
  std::string scratch;
  size_t next_too_long = 0;
  for (size_t i = 0; i < chunk.line_count(); ++i) {
    const int64_t line_number = chunk.line_numbers[i];
    for (; next_too_long < chunk.too_long_lines.size() && chunk.too_long_lines[next_too_long] < line_number;
         ++next_too_long) {
      count_skip(counts, counts.too_long, file, chunk.too_long_lines[next_too_long], long_reason);
    }
    std::string_view text;
    switch (document_of_line(chunk.line(i), jsonl, options.json_key, scratch, text)) {
      case LineOutcome::Blank:
        ++counts.blank_lines;
        continue;
      case LineOutcome::InvalidUtf8:
        count_skip(counts, counts.invalid_utf8, file, line_number, "not valid UTF-8");
        continue;
      case LineOutcome::MalformedJson:
        count_skip(counts, counts.malformed_json, file, line_number, "not valid JSON");
        continue;
      case LineOutcome::MissingKey:
        count_skip(counts, counts.missing_key, file, line_number, key_reason);
        continue;
      case LineOutcome::Document:
        break;
    }
    const size_t before = result.tokens.size();
    encoder.encode_append(text, result.tokens);
    if (options.append_eod && result.tokens.size() > before) result.tokens.push_back(encoder.eod_id);
    const int64_t length = static_cast<int64_t>(result.tokens.size() - before);
    result.document_lengths.push_back(length);
    counts.empty_documents += length == 0;
  }
  for (; next_too_long < chunk.too_long_lines.size(); ++next_too_long) {
    count_skip(counts, counts.too_long, file, chunk.too_long_lines[next_too_long], long_reason);
  }
  return result;
}

void add_counts(PreprocessStats& total, const PreprocessStats& part) {
  total.bytes_read += part.bytes_read;
  total.lines += part.lines;
  total.empty_documents += part.empty_documents;
  total.blank_lines += part.blank_lines;
  total.invalid_utf8 += part.invalid_utf8;
  total.malformed_json += part.malformed_json;
  total.missing_key += part.missing_key;
  total.too_long += part.too_long;
  for (const std::string& example : part.skipped_examples) {
    if (total.skipped_examples.size() < kSkippedExamples) total.skipped_examples.push_back(example);
  }
}

bool is_jsonl_file(const std::string& path, PreprocessInputFormat format) {
  if (format != PreprocessInputFormat::Auto) return format == PreprocessInputFormat::Jsonl;
  const std::string extension = std::filesystem::path(path).extension().string();
  return extension == ".jsonl" || extension == ".json" || extension == ".ndjson";
}

// Checks everything that can be checked before any thread starts; returns the input size.
int64_t validate(const PreprocessOptions& options, const PreprocessEncoder& encoder) {
  TS_CHECK(!options.inputs.empty(), "preprocess: no input files (--input FILE ...)");
  int64_t total = 0;
  for (const std::string& input : options.inputs) {
    std::error_code error;
    TS_CHECK(std::filesystem::is_regular_file(input, error), "preprocess: input ", input, " is not a readable file");
    const std::string extension = std::filesystem::path(input).extension().string();
    TS_CHECK(extension != ".gz" && extension != ".zst" && extension != ".bz2" && extension != ".xz",
             "preprocess: input ", input, " is compressed; decompress it first (e.g. zcat ", input, " > file.jsonl)");
    total += static_cast<int64_t>(std::filesystem::file_size(input));
  }
  TS_CHECK(!options.output_prefix.empty(), "preprocess: no output prefix (--output PREFIX)");
  const std::filesystem::path folder = std::filesystem::absolute(options.output_prefix).parent_path();
  TS_CHECK(std::filesystem::is_directory(folder), "preprocess: output folder ", folder.string(),
           " does not exist; create it first");
  TS_CHECK(options.workers >= 1 && options.workers <= 1024, "preprocess: --workers ", options.workers,
           " must be between 1 and 1024");
  TS_CHECK(options.max_document_bytes >= 1, "preprocess: --max-document-bytes must be positive");
  TS_CHECK(!options.json_key.empty(), "preprocess: --json-key is empty");
  TS_CHECK(encoder.encode_append != nullptr && encoder.vocab_size > 0, "preprocess: no tokenizer");
  TS_CHECK(!options.append_eod || (encoder.eod_id >= 0 && encoder.eod_id < encoder.vocab_size),
           "preprocess: --append-eod needs an end-of-document token; the tokenizer has none (id ", encoder.eod_id, ")");
  return total;
}

// Reader thread -> worker threads -> the calling thread (writer), in input order; see the
// header for the memory bound. Any thread's error aborts the others and is rethrown by run().
class PreprocessPipeline {
 public:
  PreprocessPipeline(const PreprocessOptions& options, const PreprocessEncoder& encoder)
      : options_(options), encoder_(encoder), max_in_flight_(2 * options.workers + 2) {
    for (const std::string& input : options.inputs) jsonl_.push_back(is_jsonl_file(input, options.format));
  }

  PreprocessStats run(PreprocessStats stats, const std::function<void(const PreprocessStats&)>& progress) {
    const auto start = std::chrono::steady_clock::now();
    auto last_report = start;
    IndexedDatasetWriter writer(options_.output_prefix, indexed_dtype_for_vocab_size(encoder_.vocab_size));
    std::vector<std::thread> threads;
    try {
      start_thread(threads, [this] { read_loop(); });
      for (int w = 0; w < options_.workers; ++w) start_thread(threads, [this] { work_loop(); });
      ChunkResult result;
      while (take_next_result(result)) {
        write(result, writer, stats);
        const auto now = std::chrono::steady_clock::now();
        if (progress && now - last_report >= std::chrono::milliseconds(500)) {
          stats.seconds = std::chrono::duration<double>(now - start).count();
          progress(stats);
          last_report = now;
        }
      }
    } catch (...) {
      fail(std::current_exception());
    }
    for (std::thread& thread : threads) thread.join();
    if (failure_) std::rethrow_exception(failure_);
    writer.finalize();
    stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (progress) progress(stats);
    return stats;
  }

 private:
  template <typename Body>
  void start_thread(std::vector<std::thread>& threads, Body body) {
    std::string failure;
    try {
      threads.emplace_back([this, body] { guarded(body); });
    } catch (const std::system_error& e) {
      failure = e.what();
    }
    TS_CHECK(failure.empty(), "preprocess: cannot start thread ", threads.size() + 1, " of ", options_.workers + 1,
             " (", failure, "); lower --workers or raise the process's memory or thread limit");
  }

  template <typename Body>
  void guarded(Body body) {
    try {
      body();
    } catch (...) {
      fail(std::current_exception());
    }
  }

  void fail(std::exception_ptr error) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!failure_) failure_ = error;
      aborted_ = true;
    }
    changed_.notify_all();
  }

  void read_loop() {
    InputChunkReader reader(options_.inputs, kChunkBytes, options_.max_document_bytes);
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return aborted_ || in_flight_ < max_in_flight_; });
        if (aborted_) return;
      }
      InputChunk chunk;
      const bool more = reader.next(chunk);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (more) {
          ++in_flight_;
          ++chunks_read_;
          pending_.push_back(std::move(chunk));
        } else {
          reading_done_ = true;
        }
      }
      changed_.notify_all();
      if (!more) return;
    }
  }

  void work_loop() {
    for (;;) {
      InputChunk chunk;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return aborted_ || !pending_.empty() || reading_done_; });
        if (aborted_ || pending_.empty()) return;
        chunk = std::move(pending_.front());
        pending_.pop_front();
      }
      ChunkResult result =
          tokenize_chunk(chunk, jsonl_[chunk.file_index], options_.inputs[chunk.file_index], options_, encoder_);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        done_.emplace(chunk.id, std::move(result));
      }
      changed_.notify_all();
    }
  }

  // Waits for the chunk after the last one written; false once all are written or on abort.
  bool take_next_result(ChunkResult& result) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] {
      return aborted_ || done_.count(next_to_write_) > 0 || (reading_done_ && next_to_write_ == chunks_read_);
    });
    auto found = done_.find(next_to_write_);
    if (aborted_ || found == done_.end()) return false;
    result = std::move(found->second);
    done_.erase(found);
    ++next_to_write_;
    --in_flight_;
    lock.unlock();
    changed_.notify_all();
    return true;
  }

  void write(const ChunkResult& result, IndexedDatasetWriter& writer, PreprocessStats& stats) {
    size_t offset = 0;
    for (int64_t length : result.document_lengths) {
      writer.add_document(std::span<const int32_t>(result.tokens.data() + offset, static_cast<size_t>(length)));
      offset += static_cast<size_t>(length);
    }
    add_counts(stats, result.counts);
    stats.documents = writer.document_count();
    stats.tokens = writer.token_count();
  }

  const PreprocessOptions& options_;
  const PreprocessEncoder& encoder_;
  const int64_t max_in_flight_;
  std::vector<bool> jsonl_;

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<InputChunk> pending_;       // read, waiting for a worker
  std::map<int64_t, ChunkResult> done_;  // tokenized, waiting for their turn to be written
  int64_t in_flight_ = 0;                // read and not yet written
  int64_t chunks_read_ = 0;
  int64_t next_to_write_ = 0;
  bool reading_done_ = false;
  bool aborted_ = false;
  std::exception_ptr failure_;
};

}  // namespace

PreprocessStats preprocess_to_indexed_dataset(const PreprocessOptions& options, const PreprocessEncoder& encoder,
                                              const std::function<void(const PreprocessStats&)>& progress) {
  PreprocessStats stats;
  stats.input_bytes = validate(options, encoder);
  PreprocessPipeline pipeline(options, encoder);
  return pipeline.run(std::move(stats), progress);
}

}  // namespace tessera
