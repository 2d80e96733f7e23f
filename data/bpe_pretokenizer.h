// Pre-tokenization: cuts text into the pieces that BPE encodes one by one, with a PCRE2 regex
// compiled with UTF and UCP (Unicode properties) and JIT. Matches are pieces, and so is any text
// between two matches (Hugging Face's Split with behavior "Isolated"); empty matches are ignored.
// Only valid UTF-8 reaches the regex: the text is first cut into maximal valid runs and maximal
// invalid runs (bpe_utf8.h); each valid run is split as if it were a whole text, and each
// invalid run is a single piece.
// `\s` and `\S` are rewritten to \p{White_Space} / \P{White_Space}: PCRE2's \s also matches
// U+180E (MONGOLIAN VOWEL SEPARATOR), which Unicode's White_Space, Rust's regex (tiktoken),
// Oniguruma (Hugging Face) and Python's regex do not count as space.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "data/bpe_regex.h"

namespace tessera {

// GPT-2's pattern (encoder.py), also tiktoken's "gpt2" and Hugging Face's ByteLevel use_regex.
inline constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Llama 3's pattern (Meta's tokenizer.py and the Split regex of its tokenizer.json).
inline constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

class Pretokenizer {
 public:
  // `source` names where the pattern came from, for the error on a pattern PCRE2 rejects.
  Pretokenizer(std::string_view pattern, const std::string& source);

  // Calls `on_piece` for each piece of `text` in order; the pieces concatenate to `text`.
  void split(std::string_view text, const std::function<void(std::string_view)>& on_piece) const;

  const std::string& pattern() const { return pattern_; }

 private:
  void split_valid_run(std::string_view run, const std::function<void(std::string_view)>& on_piece) const;

  std::string pattern_;
  Regex regex_;
};

// The pattern with \s and \S spelled as \p{White_Space} and \P{White_Space} (see above).
std::string with_unicode_white_space(std::string_view pattern);

}  // namespace tessera
