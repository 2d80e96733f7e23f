#include "data/sft_dataset.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/check.h"

namespace tessera {
namespace {

using nlohmann::json;

std::string string_field(const json& object, const char* key, const std::string& where) {
  auto it = object.find(key);
  TS_CHECK(it != object.end(), where, " has no \"", key, "\"");
  TS_CHECK(it->is_string(), where, ": \"", key, "\" must be a string, not ", it->type_name());
  return it->get<std::string>();
}

// The first-fit rule in O(log rows) per conversation: a max-tree over the room left in each
// row (rows not opened yet have all of it), searched for the leftmost row with enough room.
class FirstFitRows {
 public:
  FirstFitRows(size_t max_rows, int64_t capacity) {
    while (leaves_ < max_rows) leaves_ *= 2;
    room_.assign(2 * leaves_, capacity);
  }
  size_t place(int64_t length) {
    size_t node = 1;
    while (node < leaves_) node = room_[2 * node] >= length ? 2 * node : 2 * node + 1;
    const size_t leaf = node;
    room_[leaf] -= length;
    for (node /= 2; node >= 1; node /= 2) room_[node] = std::max(room_[2 * node], room_[2 * node + 1]);
    return leaf - leaves_;
  }

 private:
  size_t leaves_ = 1;
  std::vector<int64_t> room_;
};

// Fisher-Yates over std::mt19937_64: the same order on every platform (std::shuffle's is not).
void shuffle_in_place(std::vector<int64_t>& values, uint64_t seed) {
  std::mt19937_64 generator(seed);
  for (size_t i = values.size(); i > 1; --i) {
    std::swap(values[i - 1], values[static_cast<size_t>(generator() % i)]);
  }
}

// A token's bytes as printable text: control bytes escaped, everything else as is.
std::string printable(std::string_view bytes) {
  std::string out;
  for (char c : bytes) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (byte < 0x20 || byte == 0x7f) {
      out += fmt::format("\\x{:02x}", byte);
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

SftPacking parse_sft_packing(std::string_view text) {
  if (text == "first_fit") return SftPacking::kFirstFit;
  if (text == "sequential") return SftPacking::kSequential;
  TS_CHECK(false, "unknown SFT packing \"", text, "\"; choose first_fit or sequential");
  return SftPacking::kFirstFit;
}

SftOverflow parse_sft_overflow(std::string_view text) {
  if (text == "truncate") return SftOverflow::kTruncate;
  if (text == "skip") return SftOverflow::kSkip;
  TS_CHECK(false, "unknown SFT overflow rule \"", text, "\"; choose truncate or skip");
  return SftOverflow::kSkip;
}

std::string SftPackingReport::summary(int64_t sequence_length) const {
  return fmt::format(
      "{} conversations -> {} rows of {} tokens; packing efficiency {:.1f}% ({} of {} tokens), {} trained tokens; "
      "{} longer than the sequence: {} truncated, {} skipped",
      conversations, rows, sequence_length, 100.0 * efficiency(), real_tokens, capacity, trained_tokens,
      truncated + skipped, truncated, skipped);
}

json parse_json_object_line(std::string_view line, const std::string& origin) {
  json object;
  try {
    object = json::parse(line);
  } catch (const json::parse_error& error) {
    std::string what = error.what();
    const size_t bracket = what.find("] ");  // drop nlohmann's "[json.exception.parse_error.101] "
    TS_CHECK(false, origin, ": malformed JSON (", bracket == std::string::npos ? what : what.substr(bracket + 2), ")");
  }
  TS_CHECK(object.is_object(), origin, ": expected a JSON object, not ", object.type_name());
  return object;
}

std::vector<ChatMessage> parse_sft_line(std::string_view line, const std::string& origin) {
  const json object = parse_json_object_line(line, origin);
  std::vector<ChatMessage> messages;
  if (object.contains("messages")) {
    const json& list = object["messages"];
    TS_CHECK(list.is_array(), origin, ": \"messages\" must be a list of {\"role\", \"content\"} objects");
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string where = origin + ": message " + std::to_string(i + 1);
      TS_CHECK(list[i].is_object(), where, " must be an object {\"role\": ..., \"content\": ...}");
      const std::string role = string_field(list[i], "role", where);
      ChatMessage message;
      try {
        message.role = parse_chat_role(role);
      } catch (const Error&) {
        TS_CHECK(false, where, ": unknown role \"", role, "\"; known roles: system, user, assistant");
      }
      message.content = string_field(list[i], "content", where);
      messages.push_back(std::move(message));
    }
  } else {
    TS_CHECK(object.contains("prompt") || object.contains("response"), origin,
             ": expected {\"messages\": [...]} or {\"prompt\": ..., \"response\": ...}");
    messages.push_back({ChatRole::kUser, string_field(object, "prompt", origin)});
    messages.push_back({ChatRole::kAssistant, string_field(object, "response", origin)});
  }
  bool any_assistant = false;
  for (const ChatMessage& message : messages) any_assistant = any_assistant || message.role == ChatRole::kAssistant;
  TS_CHECK(any_assistant, origin, ": the conversation has no assistant message (nothing to train on)");
  return messages;
}

std::vector<SftConversation> read_sft_conversations(const std::vector<std::string>& files,
                                                    const ChatTemplate& chat_template) {
  TS_CHECK(!files.empty(), "SFT data: no input files");
  std::vector<SftConversation> conversations;
  for (const std::string& file : files) {
    std::ifstream stream(file);
    TS_CHECK(stream.good(), "SFT data: cannot open ", file);
    const size_t before = conversations.size();
    std::string line;
    for (int64_t number = 1; std::getline(stream, line); ++number) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      SftConversation conversation;
      conversation.origin = file + ":" + std::to_string(number);
      conversation.rendered = chat_template.render(parse_sft_line(line, conversation.origin));
      conversations.push_back(std::move(conversation));
    }
    TS_CHECK(!stream.bad(), "SFT data: reading ", file, " failed");
    TS_CHECK(conversations.size() > before, file, ": no conversations (the file is empty)");
  }
  return conversations;
}

SftDataset::SftDataset(std::vector<SftConversation> conversations, const SftDatasetOptions& options, int32_t pad_token)
    : conversations_(std::move(conversations)), options_(options), pad_token_(pad_token) {
  TS_CHECK(options_.sequence_length >= 1, "SFT data: sequence_length is ", options_.sequence_length,
           "; it must be at least 1");
  report_.conversations = static_cast<int64_t>(conversations_.size());
  std::vector<int64_t> order;
  for (size_t i = 0; i < conversations_.size(); ++i) {
    RenderedConversation& rendered = conversations_[i].rendered;
    TS_CHECK(!rendered.tokens.empty(), conversations_[i].origin, ": the conversation renders to no tokens");
    if (static_cast<int64_t>(rendered.tokens.size()) > options_.sequence_length) {
      if (options_.overflow == SftOverflow::kSkip) {
        ++report_.skipped;
        continue;
      }
      ++report_.truncated;
      rendered.tokens.resize(static_cast<size_t>(options_.sequence_length));
      rendered.loss_mask.resize(rendered.tokens.size());
    }
    order.push_back(static_cast<int64_t>(i));
  }
  TS_CHECK(!order.empty(), "SFT data: every one of the ", conversations_.size(),
           " conversations is longer than sequence_length ", options_.sequence_length,
           " (raise seq_length or truncate them)");
  TS_CHECK(options_.epochs >= 1, "SFT data: epochs is ", options_.epochs, "; it must be at least 1");
  if (options_.shuffle) shuffle_in_place(order, options_.seed);
  pack(order);
  // Epoch 0 serves the rows as packed (already in shuffled order); later epochs reshuffle them.
  for (int64_t epoch = 0; epoch < options_.epochs; ++epoch) {
    std::vector<int64_t> rows(rows_.size());
    for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<int64_t>(i);
    if (options_.shuffle && epoch > 0) shuffle_in_place(rows, options_.seed + static_cast<uint64_t>(epoch));
    order_.insert(order_.end(), rows.begin(), rows.end());
  }
}

void SftDataset::pack(const std::vector<int64_t>& order) {
  const int64_t capacity = options_.sequence_length;
  FirstFitRows first_fit(options_.packing == SftPacking::kFirstFit ? order.size() : 1, capacity);
  int64_t room = 0;  // left in the last row (sequential packing)
  for (int64_t index : order) {
    const RenderedConversation& rendered = conversations_[static_cast<size_t>(index)].rendered;
    const auto length = static_cast<int64_t>(rendered.tokens.size());
    size_t row = 0;
    if (options_.packing == SftPacking::kFirstFit) {
      row = first_fit.place(length);
    } else {
      if (rows_.empty() || room < length) {
        rows_.emplace_back();
        room = capacity;
      }
      row = rows_.size() - 1;
      room -= length;
    }
    if (row >= rows_.size()) rows_.resize(row + 1);
    rows_[row].push_back(index);
    report_.real_tokens += length;
    for (size_t t = 1; t < rendered.loss_mask.size(); ++t) report_.trained_tokens += rendered.loss_mask[t];
  }
  report_.rows = static_cast<int64_t>(rows_.size());
  report_.capacity = report_.rows * capacity;
}

SftSample SftDataset::sample(int64_t index) const {
  TS_CHECK(index >= 0 && index < size(), "SFT data: row ", index, " is outside [0, ", size(), ")");
  SftSample sample;
  const auto length = static_cast<size_t>(options_.sequence_length);
  sample.tokens.reserve(length);
  for (int64_t conversation : rows_[static_cast<size_t>(order_[static_cast<size_t>(index)])]) {
    const RenderedConversation& rendered = conversations_[static_cast<size_t>(conversation)].rendered;
    for (size_t t = 0; t < rendered.tokens.size(); ++t) {
      const bool last = t + 1 == rendered.tokens.size();
      sample.tokens.push_back(rendered.tokens[t]);
      sample.labels.push_back(last ? kSftIgnoreIndex : rendered.tokens[t + 1]);
      sample.loss_mask.push_back(last ? 0.0f : static_cast<float>(rendered.loss_mask[t + 1]));
    }
    sample.document_lengths.push_back(static_cast<int64_t>(rendered.tokens.size()));
    sample.conversations.push_back(conversation);
  }
  if (sample.tokens.size() < length)
    sample.document_lengths.push_back(static_cast<int64_t>(length - sample.tokens.size()));
  sample.tokens.resize(length, pad_token_);
  sample.labels.resize(length, kSftIgnoreIndex);
  sample.loss_mask.resize(length, 0.0f);
  return sample;
}

std::shared_ptr<SftDataset> SftDataset::load(const std::vector<std::string>& files, const ChatTemplate& chat_template,
                                             const Tokenizer& tokenizer, const SftDatasetOptions& options) {
  return std::make_shared<SftDataset>(read_sft_conversations(files, chat_template), options, tokenizer.eod_id());
}

std::string format_sft_sample(const SftSample& sample, const Tokenizer& tokenizer) {
  std::string out = fmt::format("{:>6} | {:>8} | {:<24} | {:>8} | loss\n", "pos", "token", "text", "label");
  size_t document = 0;
  int64_t document_end = 0;
  for (size_t t = 0; t < sample.tokens.size(); ++t) {
    if (static_cast<int64_t>(t) == document_end && document < sample.document_lengths.size()) {
      const bool padding = document >= sample.conversations.size();
      out += fmt::format("-- {} ({} tokens)\n", padding ? std::string("padding") : fmt::format("document {}", document),
                         sample.document_lengths[document]);
      document_end += sample.document_lengths[document++];
    }
    const std::string text =
        fmt::format("'{}'", printable(tokenizer.token_bytes(static_cast<int32_t>(sample.tokens[t]))));
    const std::string label = sample.labels[t] == kSftIgnoreIndex ? "-" : std::to_string(sample.labels[t]);
    out += fmt::format("{:>6} | {:>8} | {:<24} | {:>8} | {}\n", t, sample.tokens[t], text, label,
                       sample.loss_mask[t] != 0.0f ? "*" : ".");
  }
  return out;
}

}  // namespace tessera
