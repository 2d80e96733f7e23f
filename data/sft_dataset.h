// SftDataset: chat / instruction data for supervised fine-tuning, packed into fixed-length rows.
//
// Input: JSONL files, one conversation per line (blank lines are skipped), either
//   {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}  or
//   {"prompt": "...", "response": "..."}   (= one user message and one assistant message).
// A conversation needs at least one assistant message (otherwise nothing would be trained).
// Any bad line (malformed JSON, a missing or unknown role, a non-string content, ...) and an
// input with no conversation at all are one-line errors naming the file and line.
//
// Each conversation is rendered by a ChatTemplate (tokens + loss mask). Conversations longer
// than sequence_length are truncated to their first sequence_length tokens or skipped (counted
// in the report). The conversations are shuffled (seed; Fisher-Yates over std::mt19937_64, the
// same order on every platform) and packed into rows of sequence_length tokens:
//   first_fit   each conversation goes into the first row that still has room for it;
//   sequential  rows are filled in order, a conversation that does not fit starts a new row.
// With epochs > 1 the same rows are served again, each later epoch in its own shuffled order.
// The rest of a row is padding (token = the tokenizer's EOD, no label, mask 0), counted as the
// row's last document so that document lengths always sum to sequence_length.
//
// Sample i (one row): tokens[t]; labels[t] = tokens[t + 1] when t + 1 is in the same document,
// else -100 (ignore_index: a conversation's last token predicts nothing, and never the next
// conversation's first token); loss_mask[t] = the template mask of labels[t]'s token (0 where
// the label is ignored) — i.e. the mask is aligned with labels, as Megatron's loss_mask is;
// document_lengths: the conversations' lengths in row order, then the padding's (if any).
// The model restarts positions and keeps attention inside each document from those lengths.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/chat_template.h"

namespace tessera {

inline constexpr int64_t kSftIgnoreIndex = -100;

enum class SftPacking { kFirstFit, kSequential };
enum class SftOverflow { kTruncate, kSkip };

// "first_fit" / "sequential", "truncate" / "skip"; throws naming the value and the choices.
SftPacking parse_sft_packing(std::string_view text);
SftOverflow parse_sft_overflow(std::string_view text);

struct SftDatasetOptions {
  int64_t sequence_length = 0;
  SftPacking packing = SftPacking::kFirstFit;
  SftOverflow overflow = SftOverflow::kSkip;
  bool shuffle = true;
  uint64_t seed = 1234;
  int64_t epochs = 1;  // passes over the rows; each later pass visits them in another order (seed + epoch)
};

struct SftPackingReport {
  int64_t conversations = 0;   // read from the files
  int64_t truncated = 0;       // longer than sequence_length, cut to it
  int64_t skipped = 0;         // longer than sequence_length, left out
  int64_t rows = 0;            // packed rows (samples)
  int64_t real_tokens = 0;     // conversation tokens in the rows
  int64_t trained_tokens = 0;  // of those, tokens whose loss is taken (labels with mask 1)
  int64_t capacity = 0;        // rows x sequence_length
  double efficiency() const { return capacity == 0 ? 0.0 : static_cast<double>(real_tokens) / capacity; }
  // "1200 conversations -> 310 rows of 512 tokens, packing efficiency 93.1% (...); 3 skipped"
  std::string summary(int64_t sequence_length) const;
};

struct SftSample {
  std::vector<int64_t> tokens;            // [sequence_length]
  std::vector<int64_t> labels;            // [sequence_length]
  std::vector<float> loss_mask;           // [sequence_length]
  std::vector<int64_t> document_lengths;  // sums to sequence_length
  std::vector<int64_t> conversations;     // the conversations in this row (index in file order)
};

// A rendered conversation with where it came from.
struct SftConversation {
  RenderedConversation rendered;
  std::string origin;  // "file.jsonl:12"
};

// Reads and renders every conversation of the files, in file order (errors name file:line).
std::vector<SftConversation> read_sft_conversations(const std::vector<std::string>& files,
                                                    const ChatTemplate& chat_template);
// Parses one JSONL line's conversation; `origin` ("file:line") prefixes every error.
std::vector<ChatMessage> parse_sft_line(std::string_view line, const std::string& origin);

// One JSONL line as a JSON object; throws naming `origin` (file:line) for malformed JSON or a
// value that is not an object. Shared by the chat and preference readers.
nlohmann::json parse_json_object_line(std::string_view line, const std::string& origin);

class SftDataset {
 public:
  SftDataset(std::vector<SftConversation> conversations, const SftDatasetOptions& options, int32_t pad_token);
  static std::shared_ptr<SftDataset> load(const std::vector<std::string>& files, const ChatTemplate& chat_template,
                                          const Tokenizer& tokenizer, const SftDatasetOptions& options);

  // Rows of all epochs: epochs x report().rows.
  int64_t size() const { return static_cast<int64_t>(order_.size()); }
  int64_t sequence_length() const { return options_.sequence_length; }
  // Row `index`; thread-safe (the loader reads rows on its prefetch thread).
  SftSample sample(int64_t index) const;
  const SftPackingReport& report() const { return report_; }
  const SftConversation& conversation(int64_t index) const { return conversations_[static_cast<size_t>(index)]; }

 private:
  void pack(const std::vector<int64_t>& order);

  std::vector<SftConversation> conversations_;  // truncated where options say so
  SftDatasetOptions options_;
  int32_t pad_token_;
  std::vector<std::vector<int64_t>> rows_;  // conversation indices of each row, in row order
  std::vector<int64_t> order_;              // sample index -> row (epoch after epoch)
  SftPackingReport report_;
};

// One row as text for inspection (`--dump-sample`): a header, then one line per position,
//   "pos | token id | 'token text' | label id (- = ignored) | * where the loss is taken, else ."
// with a "-- document k (N tokens)" or "-- padding (N tokens)" line where each document starts.
// The mark sits on the position whose label is trained: the assistant's tokens appear as the
// labels of starred lines (the first assistant token is the label of the header's last token).
std::string format_sft_sample(const SftSample& sample, const Tokenizer& tokenizer);

}  // namespace tessera
