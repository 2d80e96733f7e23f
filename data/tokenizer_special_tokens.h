// Special tokens ("<|endoftext|>", "<|im_start|>", Hugging Face added tokens): strings that,
// when recognized, become one id each instead of being BPE-encoded. Occurrences are found
// leftmost first and, at one position, longest first, over raw bytes (any input, valid UTF-8
// or not), by a PCRE2 alternation of the tokens' bytes.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "data/bpe_model.h"
#include "data/bpe_regex.h"

namespace tessera {

class SpecialTokenSplitter {
 public:
  explicit SpecialTokenSplitter(std::vector<std::pair<std::string, int32_t>> tokens);

  // Calls `on_text` for each stretch between special tokens (never empty) and `on_special`
  // with the id of each special token, in text order.
  void split(std::string_view text, const std::function<void(std::string_view)>& on_text,
             const std::function<void(int32_t)>& on_special) const;

  // The id of a special token, or -1.
  int32_t find(std::string_view token) const;
  const std::vector<std::pair<std::string, int32_t>>& tokens() const { return tokens_; }

 private:
  std::vector<std::pair<std::string, int32_t>> tokens_;  // longest first
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> ids_;
  std::unique_ptr<Regex> regex_;  // null when there are no tokens
};

}  // namespace tessera
