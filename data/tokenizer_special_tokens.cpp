#include "data/tokenizer_special_tokens.h"

#include <algorithm>
#include <cstdio>

#include "core/check.h"

namespace tessera {

SpecialTokenSplitter::SpecialTokenSplitter(std::vector<std::pair<std::string, int32_t>> tokens)
    : tokens_(std::move(tokens)) {
  std::stable_sort(tokens_.begin(), tokens_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  if (tokens_.empty()) return;
  // Every byte spelled \x{hh}: no token text can be read as regex syntax.
  std::string pattern;
  for (const auto& [text, id] : tokens_) {
    TS_CHECK(!text.empty(), "special token with id ", id, " is empty; give it a non-empty string");
    TS_CHECK(ids_.emplace(text, id).second, "special token '", text, "' is given twice");
    if (!pattern.empty()) pattern.push_back('|');
    for (unsigned char byte : text) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\x{%02x}", byte);
      pattern += escaped;
    }
  }
  regex_ = std::make_unique<Regex>(pattern, Regex::Mode::kBytes, "special tokens");
}

void SpecialTokenSplitter::split(std::string_view text, const std::function<void(std::string_view)>& on_text,
                                 const std::function<void(int32_t)>& on_special) const {
  size_t offset = 0;
  if (regex_ != nullptr) {
    Regex::Matcher matcher(*regex_);
    size_t start = 0, end = 0;
    while (offset < text.size() && matcher.find(text, offset, start, end)) {
      if (start > offset) on_text(text.substr(offset, start - offset));
      on_special(find(text.substr(start, end - start)));
      offset = end;
    }
  }
  if (offset < text.size()) on_text(text.substr(offset));
}

int32_t SpecialTokenSplitter::find(std::string_view token) const {
  auto found = ids_.find(token);
  return found == ids_.end() ? -1 : found->second;
}

}  // namespace tessera
