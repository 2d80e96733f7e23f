#include "data/preference_dataset.h"

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "data/sft_dataset.h"

namespace tessera {
namespace {

using nlohmann::json;

std::string response_field(const json& object, const char* key, const std::string& origin) {
  auto it = object.find(key);
  TS_CHECK(it != object.end(), origin, " has no \"", key, "\" (a preference pair needs \"chosen\" and \"rejected\")");
  TS_CHECK(it->is_string(), origin, ": \"", key, "\" must be a string (the assistant's response), not ",
           it->type_name());
  return it->get<std::string>();
}

// One side: the prompt followed by the response as the last assistant turn. Only that turn is
// trained, so an assistant turn inside the prompt (earlier conversation) keeps mask 0: the
// prompt rendered alone is a prefix of the whole (every piece is tokenized on its own).
PreferenceSequence render_side(const ChatTemplate& chat_template, const std::vector<ChatMessage>& prompt,
                               const std::string& response, int64_t sequence_length, int32_t pad) {
  const size_t prompt_tokens = chat_template.render(prompt).tokens.size();
  std::vector<ChatMessage> messages = prompt;
  messages.push_back({ChatRole::kAssistant, response});
  const RenderedConversation rendered = chat_template.render(messages);
  PreferenceSequence side;
  side.length = static_cast<int64_t>(rendered.tokens.size());
  if (side.length > sequence_length) return side;  // the caller skips the pair
  side.tokens.assign(static_cast<size_t>(sequence_length), pad);
  side.labels.assign(static_cast<size_t>(sequence_length), kPreferenceIgnoreIndex);
  for (size_t t = 0; t < rendered.tokens.size(); ++t) {
    side.tokens[t] = rendered.tokens[t];
    const size_t next = t + 1;
    if (next < rendered.tokens.size() && next >= prompt_tokens && rendered.loss_mask[next] != 0) {
      side.labels[t] = rendered.tokens[next];
    }
  }
  return side;
}

int64_t response_tokens(const PreferenceSequence& side) {
  int64_t count = 0;
  for (int64_t label : side.labels) count += label != kPreferenceIgnoreIndex ? 1 : 0;
  return count;
}

}  // namespace

PreferencePair parse_preference_line(std::string_view line, const std::string& origin) {
  const json object = parse_json_object_line(line, origin);
  PreferencePair pair;
  pair.origin = origin;
  if (object.contains("messages")) {
    // The SFT parser reads the messages; it wants an assistant turn, so check a copy that has one.
    json conversation = object;
    conversation["messages"].push_back({{"role", "assistant"}, {"content", ""}});
    pair.prompt = parse_sft_line(conversation.dump(), origin);
    pair.prompt.pop_back();
  } else {
    auto prompt = object.find("prompt");
    TS_CHECK(prompt != object.end(), origin,
             ": expected {\"prompt\": ..., \"chosen\": ..., \"rejected\": ...} or {\"messages\": [...], \"chosen\": "
             "..., \"rejected\": ...}");
    TS_CHECK(prompt->is_string(), origin, ": \"prompt\" must be a string, not ", prompt->type_name());
    pair.prompt.push_back({ChatRole::kUser, prompt->get<std::string>()});
  }
  pair.chosen = response_field(object, "chosen", origin);
  pair.rejected = response_field(object, "rejected", origin);
  TS_CHECK(pair.chosen != pair.rejected, origin, ": \"chosen\" and \"rejected\" are the same text (", pair.chosen,
           "); a pair must prefer one response over a different one");
  return pair;
}

std::string PreferenceReport::summary(int64_t sequence_length) const {
  return fmt::format("{} pairs ({} longer than {} tokens skipped); mean response tokens {:.1f} chosen, {:.1f} rejected",
                     pairs, skipped, sequence_length, chosen_response_tokens, rejected_response_tokens);
}

std::shared_ptr<PreferenceDataset> PreferenceDataset::load(const std::vector<std::string>& files,
                                                           const ChatTemplate& chat_template,
                                                           const Tokenizer& tokenizer, int64_t sequence_length) {
  TS_CHECK(!files.empty(), "preference data: no input files");
  TS_CHECK(sequence_length >= 2, "preference data: sequence_length is ", sequence_length, "; it must be at least 2");
  auto dataset = std::make_shared<PreferenceDataset>();
  dataset->sequence_length_ = sequence_length;
  PreferenceReport& report = dataset->report_;
  double chosen_tokens = 0.0, rejected_tokens = 0.0;
  for (const std::string& file : files) {
    std::ifstream stream(file);
    TS_CHECK(stream.good(), "preference data: cannot open ", file);
    const int64_t before = report.pairs;
    std::string line;
    for (int64_t number = 1; std::getline(stream, line); ++number) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      const PreferencePair pair = parse_preference_line(line, file + ":" + std::to_string(number));
      ++report.pairs;
      PreferenceSample sample{
          render_side(chat_template, pair.prompt, pair.chosen, sequence_length, tokenizer.eod_id()),
          render_side(chat_template, pair.prompt, pair.rejected, sequence_length, tokenizer.eod_id())};
      if (sample.chosen.tokens.empty() || sample.rejected.tokens.empty()) {
        ++report.skipped;
        continue;
      }
      chosen_tokens += double(response_tokens(sample.chosen));
      rejected_tokens += double(response_tokens(sample.rejected));
      dataset->samples_.push_back(std::move(sample));
    }
    TS_CHECK(!stream.bad(), "preference data: reading ", file, " failed");
    TS_CHECK(report.pairs > before, file, ": no preference pairs (the file is empty)");
  }
  TS_CHECK(!dataset->samples_.empty(), "preference data: all ", report.pairs, " pairs of ",
           fmt::format("{}", fmt::join(files, ", ")), " are longer than ", sequence_length,
           " tokens; raise data.seq_length");
  const double kept = double(dataset->samples_.size());
  report.chosen_response_tokens = chosen_tokens / kept;
  report.rejected_response_tokens = rejected_tokens / kept;
  return dataset;
}

}  // namespace tessera
