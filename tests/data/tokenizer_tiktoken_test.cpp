// Exactness of the GPT-2 tokenizer against an independent implementation: tiktoken's ids
// (written by tests/reference/tiktoken_compare.py from the same GPT-2 files) for 1.1 MB of
// mixed text, with GPT-2's pattern and with Llama 3's, and for short edge cases with special
// tokens as text and recognized.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "data/bpe_pretokenizer.h"
#include "data/tokenizer_files.h"
#include "tokenizer_test_util.h"

namespace tessera {
namespace {

using testing::gpt2_tokenizer;
using testing::tokenizer_fixture;

// Counts positions where the ids differ and describes the first one, with the text around it.
std::string describe_mismatches(const Tokenizer& tokenizer, const std::vector<int32_t>& ours,
                                const std::vector<int32_t>& expected) {
  size_t mismatches = 0, first = std::min(ours.size(), expected.size());
  for (size_t i = 0; i < std::min(ours.size(), expected.size()); ++i) {
    if (ours[i] != expected[i]) {
      first = std::min(first, i);
      ++mismatches;
    }
  }
  if (mismatches == 0 && ours.size() == expected.size()) return "";
  size_t begin = first >= 3 ? first - 3 : 0;
  auto context = [&](const std::vector<int32_t>& ids) {
    std::string text;
    for (size_t i = begin; i < std::min(ids.size(), first + 4); ++i) {
      text.push_back('[');
      text.append(tokenizer.token_bytes(ids[i]));
      text.push_back(']');
    }
    return text;
  };
  return std::to_string(mismatches) + " mismatching ids (" + std::to_string(ours.size()) + " vs " +
         std::to_string(expected.size()) + " ids), first at " + std::to_string(first) + ": ours " + context(ours) +
         " tiktoken " + context(expected);
}

TEST(TokenizerTiktoken, Gpt2IdsEqualTiktokenOnMixedText) {
  std::string text = testing::read_gzip_file(tokenizer_fixture("mixed_text.txt.gz"));
  ASSERT_GE(text.size(), 1'000'000u);
  std::vector<int32_t> expected = testing::read_u16_ids(tokenizer_fixture("mixed_text.gpt2_ids.u16.gz"));
  std::vector<int32_t> ours = gpt2_tokenizer().encode(text);
  EXPECT_EQ(describe_mismatches(gpt2_tokenizer(), ours, expected), "");
  EXPECT_EQ(gpt2_tokenizer().decode(ours), text);
}

TEST(TokenizerTiktoken, Llama3PatternIdsEqualTiktokenOnMixedText) {
  TokenizerSpec spec = read_tokenizer_files(testing::gpt2_fixture_dir());
  spec.pattern = std::string(kLlama3Pattern);
  Tokenizer tokenizer = Tokenizer::from_spec(spec);
  std::string text = testing::read_gzip_file(tokenizer_fixture("mixed_text.txt.gz"));
  std::vector<int32_t> expected = testing::read_u16_ids(tokenizer_fixture("mixed_text.llama3_ids.u16.gz"));
  std::vector<int32_t> ours = tokenizer.encode(text);
  EXPECT_EQ(describe_mismatches(tokenizer, ours, expected), "");
  // The two patterns really cut the text differently, so both comparisons are needed.
  EXPECT_NE(ours, testing::read_u16_ids(tokenizer_fixture("mixed_text.gpt2_ids.u16.gz")));
}

TEST(TokenizerTiktoken, EdgeCasesEqualTiktoken) {
  nlohmann::json summary = nlohmann::json::parse(testing::read_file_bytes(tokenizer_fixture("cases.json").string()));
  TokenizerSpec spec = read_tokenizer_files(testing::gpt2_fixture_dir());
  spec.pattern = std::string(kLlama3Pattern);
  Tokenizer llama3_pattern = Tokenizer::from_spec(spec);
  ASSERT_GE(summary["cases"].size(), 30u);
  for (const auto& entry : summary["cases"]) {
    std::string text = entry["text"].get<std::string>();
    SCOPED_TRACE("text: '" + text + "'");
    EXPECT_EQ(gpt2_tokenizer().encode(text), entry["gpt2"].get<std::vector<int32_t>>());
    EXPECT_EQ(gpt2_tokenizer().encode(text, SpecialTokens::kRecognize),
              entry["gpt2_specials"].get<std::vector<int32_t>>());
    EXPECT_EQ(llama3_pattern.encode(text), entry["llama3"].get<std::vector<int32_t>>());
  }
}

TEST(TokenizerTiktoken, WellKnownGpt2Ids) {
  // Ids quoted throughout the GPT-2 literature.
  EXPECT_EQ(gpt2_tokenizer().encode("Hello world"), (std::vector<int32_t>{15496, 995}));
  EXPECT_EQ(gpt2_tokenizer().eod_id(), 50256);
  EXPECT_EQ(gpt2_tokenizer().vocab_size(), 50257);
  EXPECT_EQ(gpt2_tokenizer().token_id("<|endoftext|>"), 50256);
}

}  // namespace
}  // namespace tessera
