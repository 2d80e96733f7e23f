// Helpers shared by the SFT tests: a byte-level tokenizer (id = byte value, no merges) with
// Llama 3's header tokens and an end-of-document token, so that every expected id and mask in
// the tests can be written down from the text by hand; synthetic conversations whose tokens
// name their conversation and place; and the fixture's path.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "data/bpe_pretokenizer.h"
#include "data/sft_dataset.h"
#include "data/tokenizer.h"
#include "data/tokenizer_files.h"
#include "data_test_util.h"

namespace tessera::testing {

inline constexpr int32_t kByteEod = 256;
inline constexpr int32_t kByteBeginOfText = 257;
inline constexpr int32_t kByteStartHeader = 258;
inline constexpr int32_t kByteEndHeader = 259;
inline constexpr int32_t kByteEot = 260;

inline const Tokenizer& byte_tokenizer() {
  static const Tokenizer tokenizer = [] {
    TokenizerSpec spec;
    for (int byte = 0; byte < 256; ++byte) spec.vocab[std::string(1, static_cast<char>(byte))] = byte;
    spec.special_tokens = {{"<|endoftext|>", kByteEod},
                           {"<|begin_of_text|>", kByteBeginOfText},
                           {"<|start_header_id|>", kByteStartHeader},
                           {"<|end_header_id|>", kByteEndHeader},
                           {"<|eot_id|>", kByteEot}};
    spec.pattern = std::string(kGpt2Pattern);
    spec.source = "byte tokenizer (test)";
    return Tokenizer::from_spec(spec);
  }();
  return tokenizer;
}

// The ids of `text` under byte_tokenizer(): its bytes.
inline std::vector<int32_t> byte_ids(const std::string& text) {
  std::vector<int32_t> ids;
  for (char c : text) ids.push_back(static_cast<unsigned char>(c));
  return ids;
}

// Conversation `id` of `length` tokens: token t is 1000 x id + t (so every token names its
// conversation and place); the second half is "assistant" (mask 1).
inline SftConversation synthetic(int64_t id, int64_t length) {
  SftConversation conversation;
  for (int64_t t = 0; t < length; ++t) {
    conversation.rendered.tokens.push_back(static_cast<int32_t>(1000 * id + t));
    conversation.rendered.loss_mask.push_back(t >= length / 2 ? 1 : 0);
  }
  conversation.origin = "synthetic:" + std::to_string(id);
  return conversation;
}

inline std::vector<SftConversation> synthetic_set(const std::vector<int64_t>& lengths) {
  std::vector<SftConversation> conversations;
  for (size_t i = 0; i < lengths.size(); ++i) conversations.push_back(synthetic(static_cast<int64_t>(i), lengths[i]));
  return conversations;
}

inline std::filesystem::path sft_fixture() { return repository_root() / "tests/data/fixtures/sft_chat.jsonl"; }

}  // namespace tessera::testing
