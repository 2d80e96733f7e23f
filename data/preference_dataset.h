// PreferenceDataset: chosen/rejected response pairs for reward models and DPO, rendered with a
// chat template (data/chat_template.h), one pair per JSONL line (blank lines skipped):
//   {"prompt": "What is 2 + 3?", "chosen": "5", "rejected": "6"}          or
//   {"messages": [{"role": "system"|"user"|"assistant", ...}, ...], "chosen": "...", "rejected": "..."}
// The prompt (one user message, or the messages: the conversation so far) is followed by one
// assistant message holding the chosen or the rejected text; each side is rendered on its own.
// Only the response is trained: a side's label mask is the template's loss mask of the assistant
// turn (its content and end token), never the prompt. Bad lines are one-line errors naming
// file:line (malformed JSON, a missing or non-string "chosen"/"rejected", chosen == rejected).
//
// Pairs are not packed: each side is one row of sequence_length tokens, right-padded with the
// tokenizer's EOD (causal attention keeps the padding out of the real tokens). A pair with a
// side longer than sequence_length is skipped and counted. Sample order is the caller's
// (launcher/preference_batches.h shuffles it).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "data/chat_template.h"

namespace tessera {

inline constexpr int64_t kPreferenceIgnoreIndex = -100;

// One side of a pair as a padded row.
struct PreferenceSequence {
  std::vector<int64_t> tokens;  // [sequence_length], right-padded with EOD
  // [sequence_length]: labels[t] = tokens[t + 1] where that token is part of the response, else
  // kPreferenceIgnoreIndex; so sum_t log p(labels[t]) is the response's log-probability.
  std::vector<int64_t> labels;
  int64_t length = 0;  // real tokens; the reward head reads position length - 1
};

struct PreferenceSample {
  PreferenceSequence chosen, rejected;
};

// A pair as read: the prompt's messages and the two responses, with where it came from.
struct PreferencePair {
  std::vector<ChatMessage> prompt;
  std::string chosen, rejected;
  std::string origin;  // "file.jsonl:12"
};

// Parses one JSONL line; `origin` ("file:line") prefixes every error.
PreferencePair parse_preference_line(std::string_view line, const std::string& origin);

struct PreferenceReport {
  int64_t pairs = 0;    // read from the files
  int64_t skipped = 0;  // a side longer than sequence_length
  // "120 pairs (3 longer than 64 tokens skipped); mean response tokens 4.1 chosen, 4.3 rejected"
  std::string summary(int64_t sequence_length) const;
  double chosen_response_tokens = 0.0, rejected_response_tokens = 0.0;  // means over the kept pairs
};

class PreferenceDataset {
 public:
  // Reads and renders every pair of `files` (file order). Throws naming file:line for bad lines and
  // naming the files when no pair fits sequence_length.
  static std::shared_ptr<PreferenceDataset> load(const std::vector<std::string>& files,
                                                 const ChatTemplate& chat_template, const Tokenizer& tokenizer,
                                                 int64_t sequence_length);

  int64_t size() const { return static_cast<int64_t>(samples_.size()); }
  int64_t sequence_length() const { return sequence_length_; }
  const PreferenceSample& sample(int64_t index) const { return samples_.at(static_cast<size_t>(index)); }
  const PreferenceReport& report() const { return report_; }

 private:
  int64_t sequence_length_ = 0;
  std::vector<PreferenceSample> samples_;
  PreferenceReport report_;
};

}  // namespace tessera
