#include "data/bpe_pretokenizer.h"

#include "data/bpe_utf8.h"

namespace tessera {

std::string with_unicode_white_space(std::string_view pattern) {
  std::string rewritten;
  rewritten.reserve(pattern.size() + 32);
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '\\' || i + 1 == pattern.size()) {
      rewritten.push_back(pattern[i]);
      continue;
    }
    char escaped = pattern[++i];
    if (escaped == 's') {
      rewritten += "\\p{White_Space}";
    } else if (escaped == 'S') {
      rewritten += "\\P{White_Space}";
    } else if (escaped == 'Q') {  // \Q...\E quotes its text literally
      size_t end = pattern.find("\\E", i + 1);
      end = end == std::string_view::npos ? pattern.size() : end + 2;
      rewritten.append(pattern.substr(i - 1, end - (i - 1)));
      i = end - 1;
    } else {
      rewritten.push_back('\\');
      rewritten.push_back(escaped);
    }
  }
  return rewritten;
}

Pretokenizer::Pretokenizer(std::string_view pattern, const std::string& source)
    : pattern_(pattern), regex_(with_unicode_white_space(pattern), Regex::Mode::kUnicode, source) {}

void Pretokenizer::split(std::string_view text, const std::function<void(std::string_view)>& on_piece) const {
  while (!text.empty()) {
    size_t valid = valid_utf8_prefix_length(text);
    if (valid > 0) split_valid_run(text.substr(0, valid), on_piece);
    text.remove_prefix(valid);
    size_t invalid = invalid_utf8_prefix_length(text);
    if (invalid > 0) on_piece(text.substr(0, invalid));
    text.remove_prefix(invalid);
  }
}

void Pretokenizer::split_valid_run(std::string_view run, const std::function<void(std::string_view)>& on_piece) const {
  Regex::Matcher matcher(regex_);
  size_t offset = 0, start = 0, end = 0;
  while (offset < run.size() && matcher.find(run, offset, start, end)) {
    if (start > offset) on_piece(run.substr(offset, start - offset));
    on_piece(run.substr(start, end - start));
    offset = end;
  }
  if (offset < run.size()) on_piece(run.substr(offset));
}

}  // namespace tessera
