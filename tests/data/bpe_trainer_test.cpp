// The BPE trainer: merges checked against a hand-computed corpus and against a naive re-count
// of every pair at every step; the trained tokenizer has the requested vocabulary size, round-
// trips any bytes and reads back from the GPT-2 files it writes; block-wise reading counts the
// same pieces as reading whole files; too little text or too small a size are clear errors.
#include "data/bpe_trainer.h"

#include <gtest/gtest.h>

#include <map>

#include "core/check.h"
#include "data/tokenizer.h"
#include "tokenizer_test_util.h"

namespace tessera {
namespace {

using testing::TemporaryFolder;
using testing::write_file_bytes;
using Merges = std::vector<std::pair<std::string, std::string>>;

// Pieces (GPT-2 pattern): "hug", " hug" x2, " pug", " pun", " bun", " hugs".
constexpr const char* kHugCorpus = "hug hug hug pug pun bun hugs";

TEST(BpeTrainer, MergesTheMostFrequentPairsOfAHandCountedCorpus) {
  TemporaryFolder folder;
  write_file_bytes(folder.file("corpus.txt"), kHugCorpus);
  BpeTrainerOptions options;
  options.vocab_size = 256 + 6 + 1;  // six merges and <|endoftext|>
  TokenizerSpec spec = train_bpe({folder.file("corpus.txt")}, options);
  // By hand: (u,g) occurs 5 times; then (h,ug) 4; (" ",hug) 3; then (" ",p) and (u,n) both 2,
  // and the tie goes to the smaller ids (32 < 117); then (u,n) 2; then all pairs occur once and
  // (" ",b) = (32, 98) has the smallest ids.
  EXPECT_EQ(spec.merges, (Merges{{"u", "g"}, {"h", "ug"}, {" ", "hug"}, {" ", "p"}, {"u", "n"}, {" ", "b"}}));
  Tokenizer tokenizer = Tokenizer::from_spec(spec);
  EXPECT_EQ(tokenizer.vocab_size(), options.vocab_size);
  EXPECT_EQ(tokenizer.token_id("ug"), 256);
  EXPECT_EQ(tokenizer.token_id(" hug"), 258);
  EXPECT_EQ(tokenizer.eod_id(), 262);
  // "hugs": (u,g) then (h,ug); (hug,s) was never learned.
  EXPECT_EQ(tokenizer.encode("hugs"), (std::vector<int32_t>{257, 's'}));
  // " bun": (u,n) has the lower rank, so it merges before (" ",b).
  EXPECT_EQ(tokenizer.encode(" pun bun"), (std::vector<int32_t>{259, 260, 261, 260}));
}

// The trainer's rule, re-implemented as plainly as possible: recount every pair every step.
Merges naive_merges(const PieceCounts& pieces, int merges_wanted) {
  std::vector<std::pair<std::vector<std::string>, int64_t>> words;
  for (const auto& [piece, count] : pieces) {
    std::vector<std::string> symbols;
    for (char byte : piece) symbols.emplace_back(1, byte);
    words.emplace_back(symbols, count);
  }
  std::map<std::string, int32_t> ids;  // token bytes -> id, to break ties the trainer's way
  for (int byte = 0; byte < 256; ++byte) ids[std::string(1, static_cast<char>(byte))] = byte;
  Merges merges;
  while (static_cast<int>(merges.size()) < merges_wanted) {
    std::map<std::pair<int32_t, int32_t>, int64_t> counts;
    for (const auto& [symbols, count] : words) {
      for (size_t i = 0; i + 1 < symbols.size(); ++i) counts[{ids[symbols[i]], ids[symbols[i + 1]]}] += count;
    }
    auto best = counts.begin();
    for (auto it = counts.begin(); it != counts.end(); ++it) {
      if (it->second > best->second) best = it;  // std::map order: the first maximum has the smallest ids
    }
    std::string left, right;
    for (const auto& [bytes, id] : ids) {
      if (id == best->first.first) left = bytes;
      if (id == best->first.second) right = bytes;
    }
    merges.emplace_back(left, right);
    ids.emplace(left + right, static_cast<int32_t>(ids.size()));
    for (auto& [symbols, count] : words) {
      std::vector<std::string> merged;
      for (size_t i = 0; i < symbols.size(); ++i) {
        if (i + 1 < symbols.size() && symbols[i] == left && symbols[i + 1] == right) {
          merged.push_back(left + right);
          ++i;
        } else {
          merged.push_back(symbols[i]);
        }
      }
      symbols = merged;
    }
  }
  return merges;
}

TEST(BpeTrainer, MergesEqualANaiveRecountOnRealText) {
  TemporaryFolder folder;
  std::string text = testing::read_gzip_file(testing::tokenizer_fixture("mixed_text.txt.gz")).substr(0, 30'000);
  write_file_bytes(folder.file("text.txt"), text);
  PieceCounts pieces = count_pieces({folder.file("text.txt")}, std::string(kGpt2Pattern));
  BpeTrainerOptions options;
  options.vocab_size = 256 + 120 + 1;
  Merges merges = learn_bpe(pieces, options).merges;
  EXPECT_EQ(merges, naive_merges(pieces, static_cast<int>(merges.size())));
}

TEST(BpeTrainer, TrainedTokenizerRoundTripsAndReadsBackFromItsFiles) {
  TemporaryFolder folder;
  std::string text = testing::read_gzip_file(testing::tokenizer_fixture("mixed_text.txt.gz")).substr(0, 200'000);
  write_file_bytes(folder.file("a.txt"), text.substr(0, 100'000));
  write_file_bytes(folder.file("b.txt"), text.substr(100'000));
  BpeTrainerOptions options;
  options.vocab_size = 1000;
  int64_t last_done = -1, progress_calls = 0;
  options.on_progress = [&](int64_t done, int64_t total) {
    EXPECT_GT(done, last_done);
    EXPECT_EQ(total, 1000 - 256 - 1);
    last_done = done;
    ++progress_calls;
  };
  TokenizerSpec spec = train_bpe({folder.file("a.txt"), folder.file("b.txt")}, options);
  EXPECT_EQ(last_done, 1000 - 256 - 1);
  EXPECT_GE(progress_calls, 100);
  Tokenizer tokenizer = Tokenizer::from_spec(spec);
  EXPECT_EQ(tokenizer.vocab_size(), 1000);
  std::vector<int32_t> ids = tokenizer.encode(text);
  EXPECT_LT(ids.size(), text.size() / 2);  // the learned merges compress the text they came from
  EXPECT_EQ(tokenizer.decode(ids), text);
  std::string odd_bytes =
      "\xff\xfe"
      "caf\xc3\xa9 \xe2\x82 \xf0\x9f\x98\x80<|endoftext|>";
  EXPECT_EQ(tokenizer.decode(tokenizer.encode(odd_bytes, SpecialTokens::kRecognize)), odd_bytes);
  write_gpt2_tokenizer_files(spec, folder.file("vocab.json"), folder.file("merges.txt"));
  Tokenizer reloaded = Tokenizer::load(folder.path());
  EXPECT_EQ(reloaded.encode(text), ids);
  EXPECT_EQ(reloaded.vocab_size(), 1000);
}

TEST(BpeTrainer, BlockwiseReadingCountsTheSamePieces) {
  TemporaryFolder folder;
  std::string text = testing::read_gzip_file(testing::tokenizer_fixture("mixed_text.txt.gz")).substr(0, 100'000);
  write_file_bytes(folder.file("text.txt"), text);
  for (std::string_view pattern : {kGpt2Pattern, kLlama3Pattern}) {
    PieceCounts whole = count_pieces({folder.file("text.txt")}, std::string(pattern), text.size() + 1);
    for (size_t block : {size_t{1}, size_t{2}, size_t{3}, size_t{5}, size_t{7}, size_t{4096}}) {
      EXPECT_EQ(count_pieces({folder.file("text.txt")}, std::string(pattern), block), whole) << "block " << block;
    }
  }
}

TEST(BpeTrainer, ImpossibleRequestsGiveClearErrors) {
  TemporaryFolder folder;
  write_file_bytes(folder.file("corpus.txt"), kHugCorpus);
  BpeTrainerOptions options;
  options.vocab_size = 256 + 30 + 1;  // the corpus has far fewer pairs than 30 merges need
  try {
    train_bpe({folder.file("corpus.txt")}, options);
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("ran out of pairs to merge"), std::string::npos) << error.what();
  }
  options.vocab_size = 200;
  try {
    train_bpe({folder.file("corpus.txt")}, options);
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("below the 256 byte tokens"), std::string::npos) << error.what();
  }
  options.vocab_size = 300;
  try {
    train_bpe({folder.file("missing.txt")}, options);
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("cannot open text file"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace tessera
