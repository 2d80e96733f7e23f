// Behaviour of the tokenizer beyond tiktoken's domain, against hand-computed expectations:
// strict UTF-8 runs, invalid bytes as their own pieces (any byte string round-trips), special
// tokens as text or recognized, user special tokens, the end-of-document id, decode errors,
// very long pieces, and concurrent encode() on one tokenizer.
#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "core/check.h"
#include "data/bpe_pretokenizer.h"
#include "data/bpe_utf8.h"
#include "data/tokenizer_files.h"
#include "tokenizer_test_util.h"

namespace tessera {
namespace {

using testing::gpt2_tokenizer;

std::vector<std::string> gpt2_pieces(std::string_view text) {
  static const Pretokenizer pretokenizer(kGpt2Pattern, "test");
  std::vector<std::string> pieces;
  pretokenizer.split(text, [&](std::string_view piece) { pieces.emplace_back(piece); });
  return pieces;
}

std::vector<int32_t> concat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> all;
  for (const auto& part : parts) all.insert(all.end(), part.begin(), part.end());
  return all;
}

TEST(TokenizerUtf8, ValidAndInvalidRunsFollowRfc3629) {
  EXPECT_EQ(valid_utf8_prefix_length("abcdefghijklm\xff"), 13u);                    // past the 8-byte ASCII fast path
  EXPECT_EQ(valid_utf8_prefix_length("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"), 9u);  // é € 😀
  EXPECT_EQ(invalid_utf8_prefix_length("\xc0\xaf"
                                       "a"),
            2u);  // overlong '/'
  EXPECT_EQ(invalid_utf8_prefix_length("\xed\xa0\x80"
                                       "a"),
            3u);  // surrogate U+D800
  EXPECT_EQ(invalid_utf8_prefix_length("\xf4\x90\x80\x80"
                                       "a"),
            4u);  // U+110000
  EXPECT_EQ(invalid_utf8_prefix_length("\xe2\x82"
                                       "a"),
            2u);                                                  // truncated €
  EXPECT_EQ(invalid_utf8_prefix_length("\x80\xbf\xc3\xa9"), 2u);  // stray continuations, then é
  EXPECT_EQ(invalid_utf8_prefix_length("\xf5\xff\xfe"), 3u);      // bytes that never start one
  EXPECT_EQ(invalid_utf8_prefix_length("\xe2\x82\xac"), 0u);
  EXPECT_EQ(utf8_length_without_open_tail("ab\xe2\x82"), 2u);
  EXPECT_EQ(utf8_length_without_open_tail("ab\xf0"), 2u);
  EXPECT_EQ(utf8_length_without_open_tail("ab\xe2\x82\xac"), 5u);
  EXPECT_EQ(utf8_length_without_open_tail("ab\x80\x80\x80\x80"), 6u);
}

TEST(TokenizerPretokenizer, Gpt2PiecesAndInvalidRuns) {
  EXPECT_EQ(gpt2_pieces("Hello  world"), (std::vector<std::string>{"Hello", " ", " world"}));
  EXPECT_EQ(gpt2_pieces("it's 42!"), (std::vector<std::string>{"it", "'s", " 42", "!"}));
  // Invalid bytes end the valid run before them and form one piece per maximal run.
  EXPECT_EQ(gpt2_pieces("ab\xff"
                        "cd"),
            (std::vector<std::string>{"ab", "\xff", "cd"}));
  EXPECT_EQ(gpt2_pieces(" x\xff\xfe y"), (std::vector<std::string>{" x", "\xff\xfe", " y"}));
  EXPECT_EQ(gpt2_pieces("a \xff"), (std::vector<std::string>{"a", " ", "\xff"}));
  EXPECT_EQ(gpt2_pieces("\xe2\x82"
                        "A"),
            (std::vector<std::string>{"\xe2\x82", "A"}));
  // U+180E is not White_Space (Unicode 6.3+), so it joins punctuation as tiktoken does.
  EXPECT_EQ(gpt2_pieces("\xe1\xa0\x8e!"), (std::vector<std::string>{"\xe1\xa0\x8e!"}));
}

TEST(TokenizerPretokenizer, WhitespaceClassesAreRewrittenOutsideQuotesAndEscapes) {
  EXPECT_EQ(with_unicode_white_space(R"(\s+(?!\S)|[^\s\p{L}])"),
            R"(\p{White_Space}+(?!\P{White_Space})|[^\p{White_Space}\p{L}])");
  EXPECT_EQ(with_unicode_white_space(R"(\\s\Q\s\E\d)"), R"(\\s\Q\s\E\d)");
}

TEST(TokenizerRoundTrip, InvalidUtf8IsEncodedByTheDocumentedRule) {
  const Tokenizer& gpt2 = gpt2_tokenizer();
  int32_t byte_ff = gpt2.token_id("\xff"), quote_prefix = gpt2.token_id("\xe2\x80");
  ASSERT_GE(byte_ff, 0);
  ASSERT_GE(quote_prefix, 0);  // GPT-2 has a token for the first two bytes of U+2000-U+203F
  EXPECT_EQ(gpt2.encode("ab\xff"
                        "cd"),
            concat({gpt2.encode("ab"), {byte_ff}, gpt2.encode("cd")}));
  // The invalid run "\xe2\x80" (a truncated U+20xx) is one piece, merged by BPE into one token.
  EXPECT_EQ(gpt2.encode("\xe2\x80"
                        "A"),
            concat({{quote_prefix}, gpt2.encode("A")}));
}

TEST(TokenizerRoundTrip, RandomByteStringsRoundTrip) {
  const Tokenizer& gpt2 = gpt2_tokenizer();
  std::mt19937 rng(7);
  const std::vector<std::string> atoms = {"a",
                                          "Z",
                                          " ",
                                          "  ",
                                          "\n",
                                          "\t",
                                          "'s",
                                          "7",
                                          "!",
                                          "<|endoftext|>",
                                          "\xc3\xa9",
                                          "\xe2\x82\xac",
                                          "\xf0\x9f\x98\x80",
                                          "\xe2\x82",
                                          "\x80",
                                          "\xff",
                                          "\xc0\xaf",
                                          "\xed\xa0\x80",
                                          "\xe4\xb8\xad",
                                          "\xe1\xa0\x8e"};
  for (int trial = 0; trial < 3000; ++trial) {
    std::string text;
    int atoms_in_text = static_cast<int>(rng() % 24);
    for (int i = 0; i < atoms_in_text; ++i) {
      text += rng() % 4 == 0 ? std::string(1, static_cast<char>(rng() % 256)) : atoms[rng() % atoms.size()];
    }
    ASSERT_EQ(gpt2.decode(gpt2.encode(text)), text) << "trial " << trial;
    ASSERT_EQ(gpt2.decode(gpt2.encode(text, SpecialTokens::kRecognize)), text) << "trial " << trial;
  }
}

TEST(TokenizerSpecialTokens, AsTextOrRecognized) {
  const Tokenizer& gpt2 = gpt2_tokenizer();
  std::vector<int32_t> as_text = gpt2.encode("a<|endoftext|>b");
  EXPECT_EQ(std::count(as_text.begin(), as_text.end(), 50256), 0);
  EXPECT_EQ(gpt2.encode("a<|endoftext|>b", SpecialTokens::kRecognize),
            concat({gpt2.encode("a"), {50256}, gpt2.encode("b")}));
}

TEST(TokenizerSpecialTokens, UserTokensGetNewIdsOrKeepTheirs) {
  Tokenizer tokenizer = Tokenizer::load(testing::gpt2_fixture_dir());
  int32_t hello = tokenizer.token_id("hello");
  ASSERT_GE(hello, 0);
  tokenizer.add_special_tokens({"<|im_start|>", "<|im_end|>", "<|im", "hello", "<|im_end|>"});
  EXPECT_EQ(tokenizer.token_id("<|im_start|>"), 50257);
  EXPECT_EQ(tokenizer.token_id("<|im_end|>"), 50258);
  EXPECT_EQ(tokenizer.token_id("<|im"), 50259);
  EXPECT_EQ(tokenizer.token_id("hello"), hello);
  EXPECT_EQ(tokenizer.vocab_size(), 50260);
  std::string chat = "<|im_start|>user\nhi<|im_end|>";
  std::vector<int32_t> ids = tokenizer.encode(chat, SpecialTokens::kRecognize);
  // The longest special token wins where two start at the same byte.
  EXPECT_EQ(ids, concat({{50257}, tokenizer.encode("user\nhi"), {50258}}));
  EXPECT_EQ(tokenizer.decode(ids), chat);
  EXPECT_EQ(tokenizer.encode(chat), gpt2_tokenizer().encode(chat));
}

TEST(TokenizerSpecialTokens, EndOfDocumentId) {
  EXPECT_EQ(gpt2_tokenizer().eod_id(), 50256);
  TokenizerSpec spec = read_tokenizer_files(testing::gpt2_fixture_dir());
  Tokenizer tokenizer = Tokenizer::from_spec(spec);
  tokenizer.set_eod_token("!");
  EXPECT_EQ(tokenizer.eod_id(), 0);
  try {
    tokenizer.set_eod_token("<|nope|>");
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("'<|nope|>' is not in the tokenizer's vocabulary"), std::string::npos);
  }
  spec.special_tokens.clear();
  Tokenizer without_specials = Tokenizer::from_spec(spec);
  try {
    without_specials.eod_id();
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("has no end-of-document token"), std::string::npos);
  }
}

TEST(TokenizerRoundTrip, DecodeRejectsUnknownIds) {
  for (int32_t id : {-1, 50257, 1 << 30}) {
    try {
      gpt2_tokenizer().decode(std::vector<int32_t>{15496, id});
      FAIL() << "expected an error for id " << id;
    } catch (const Error& error) {
      EXPECT_NE(std::string(error.what()).find("is not a token of this tokenizer"), std::string::npos);
    }
  }
}

TEST(TokenizerRoundTrip, VeryLongPiecesRoundTrip) {
  const Tokenizer& gpt2 = gpt2_tokenizer();
  for (const std::string& text :
       {std::string(200'000, ' '), std::string(200'000, 'a'), std::string(100'000, '7'),
        std::string(50'000, '\n') + std::string(50'000, '\t') + "x", std::string(60'000, '\xff')}) {
    std::vector<int32_t> ids = gpt2.encode(text);
    EXPECT_LE(ids.size(), text.size());
    EXPECT_EQ(gpt2.decode(ids), text);
  }
}

TEST(TokenizerThreads, ConcurrentEncodeEqualsSerial) {
  std::string text = testing::read_gzip_file(testing::tokenizer_fixture("mixed_text.txt.gz")).substr(0, 400'000);
  const size_t threads = 4;
  std::vector<std::string_view> slices;
  for (size_t t = 0; t < threads; ++t)
    slices.push_back(std::string_view(text).substr(t * text.size() / threads, text.size() / threads));
  std::vector<std::vector<int32_t>> serial;
  for (auto slice : slices) serial.push_back(gpt2_tokenizer().encode(slice));
  Tokenizer shared = Tokenizer::load(testing::gpt2_fixture_dir());  // empty cache: threads fill it together
  std::vector<std::vector<int32_t>> concurrent(threads);
  std::vector<std::thread> workers;
  for (size_t t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int repeat = 0; repeat < 3; ++repeat) concurrent[t] = shared.encode(slices[t]);
    });
  }
  for (auto& worker : workers) worker.join();
  EXPECT_EQ(concurrent, serial);
}

}  // namespace
}  // namespace tessera
