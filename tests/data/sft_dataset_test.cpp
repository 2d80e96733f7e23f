// SFT data: both JSONL shapes read from the checked-in fixture (lengths and trained tokens
// counted by hand on a byte-level tokenizer); packing by hand for first-fit and sequential;
// on shuffled random data every conversation's tokens appear exactly once, document lengths
// sum to the sequence length, labels never cross a document, the loss mask is the template's
// mask of each label, and efficiency matches a count; too-long conversations are truncated or
// skipped; bad input is a one-line error naming the file and line.
#include "data/sft_dataset.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <random>

#include "core/check.h"
#include "sft_test_util.h"

namespace tessera {
namespace {

using testing::byte_tokenizer;
using testing::synthetic_set;
using testing::TemporaryFolder;
using testing::write_file_bytes;

SftDatasetOptions options_for(int64_t sequence_length, SftPacking packing, bool shuffle = false) {
  SftDatasetOptions options;
  options.sequence_length = sequence_length;
  options.packing = packing;
  options.shuffle = shuffle;
  return options;
}

std::vector<std::vector<int64_t>> row_conversations(const SftDataset& dataset) {
  std::vector<std::vector<int64_t>> rows;
  for (int64_t i = 0; i < dataset.size(); ++i) rows.push_back(dataset.sample(i).conversations);
  return rows;
}

constexpr int32_t kPad = 7;

TEST(SftDataset, FirstFitPacksIntoTheFirstRowWithRoom) {
  // L = 10, lengths 6 5 4 3 2 7 in order: 6 -> row 0 (4 left), 5 -> row 1 (5 left), 4 -> row 0
  // (full), 3 -> row 1 (2 left), 2 -> row 1 (full), 7 -> row 2. 27 tokens in 3 x 10.
  SftDataset dataset(synthetic_set({6, 5, 4, 3, 2, 7}), options_for(10, SftPacking::kFirstFit), kPad);
  EXPECT_EQ(row_conversations(dataset), (std::vector<std::vector<int64_t>>{{0, 2}, {1, 3, 4}, {5}}));
  EXPECT_EQ(dataset.report().real_tokens, 27);
  EXPECT_EQ(dataset.report().capacity, 30);
  EXPECT_DOUBLE_EQ(dataset.report().efficiency(), 0.9);
  EXPECT_EQ(dataset.sample(2).document_lengths, (std::vector<int64_t>{7, 3}));  // 3 tokens of padding
  EXPECT_EQ(dataset.sample(0).document_lengths, (std::vector<int64_t>{6, 4}));
}

TEST(SftDataset, SequentialPackingStartsANewRowWhenTheNextDoesNotFit) {
  // 6 -> row 0; 5 does not fit (4 left) -> row 1; 4 -> row 1 (1 left); 3 -> row 2; 2 -> row 2;
  // 7 does not fit (5 left) -> row 3. 27 tokens in 4 x 10.
  SftDataset dataset(synthetic_set({6, 5, 4, 3, 2, 7}), options_for(10, SftPacking::kSequential), kPad);
  EXPECT_EQ(row_conversations(dataset), (std::vector<std::vector<int64_t>>{{0}, {1, 2}, {3, 4}, {5}}));
  EXPECT_DOUBLE_EQ(dataset.report().efficiency(), 27.0 / 40.0);
}

TEST(SftDataset, RowsHoldTokensLabelsAndMaskByHand) {
  // Conversations of 3 and 4 tokens in one row of 9: two documents and 2 tokens of padding.
  SftDataset dataset(synthetic_set({3, 4}), options_for(9, SftPacking::kFirstFit), kPad);
  ASSERT_EQ(dataset.size(), 1);
  SftSample row = dataset.sample(0);
  EXPECT_EQ(row.tokens, (std::vector<int64_t>{0, 1, 2, 1000, 1001, 1002, 1003, kPad, kPad}));
  EXPECT_EQ(row.labels, (std::vector<int64_t>{1, 2, -100, 1001, 1002, 1003, -100, -100, -100}));
  // Masks: conversation 0 (3 tokens) is 0 1 1, conversation 1 (4 tokens) 0 0 1 1; each
  // position carries its label's bit.
  EXPECT_EQ(row.loss_mask, (std::vector<float>{1, 1, 0, 0, 1, 1, 0, 0, 0}));
  EXPECT_EQ(row.document_lengths, (std::vector<int64_t>{3, 4, 2}));
  // Trained labels: conversation 0's tokens 1 and 2, conversation 1's tokens 2 and 3.
  EXPECT_EQ(dataset.report().trained_tokens, 4);
}

TEST(SftDataset, ShuffledPackingKeepsEveryTokenOnceAndLabelsInsideDocuments) {
  std::mt19937_64 generator(5);
  std::vector<int64_t> lengths;
  for (int i = 0; i < 300; ++i) lengths.push_back(1 + static_cast<int64_t>(generator() % 40));
  const int64_t sequence_length = 48;
  for (SftPacking packing : {SftPacking::kFirstFit, SftPacking::kSequential}) {
    SftDataset dataset(synthetic_set(lengths), options_for(sequence_length, packing, true), kPad);
    std::map<int64_t, int64_t> seen;  // token -> times seen
    int64_t real = 0, trained = 0;
    for (int64_t i = 0; i < dataset.size(); ++i) {
      SftSample row = dataset.sample(i);
      ASSERT_EQ(row.tokens.size(), static_cast<size_t>(sequence_length));
      int64_t sum = 0;
      for (int64_t length : row.document_lengths) sum += length;
      EXPECT_EQ(sum, sequence_length);
      int64_t start = 0;
      for (size_t d = 0; d < row.document_lengths.size(); ++d) {
        const int64_t end = start + row.document_lengths[d];
        const bool padding = d >= row.conversations.size();
        for (int64_t t = start; t < end; ++t) {
          const auto at = static_cast<size_t>(t);
          if (padding) {
            EXPECT_EQ(row.tokens[at], kPad);
            EXPECT_EQ(row.labels[at], kSftIgnoreIndex);
            EXPECT_EQ(row.loss_mask[at], 0.0f);
            continue;
          }
          const int64_t conversation = row.conversations[d];
          EXPECT_EQ(row.tokens[at], 1000 * conversation + (t - start)) << "row " << i << " position " << t;
          ++seen[row.tokens[at]];
          ++real;
          if (t + 1 == end) {
            EXPECT_EQ(row.labels[at], kSftIgnoreIndex) << "a label crosses into the next document";
            EXPECT_EQ(row.loss_mask[at], 0.0f);
          } else {
            EXPECT_EQ(row.labels[at], row.tokens[at] + 1);
            const int64_t label_place = t + 1 - start;
            const int64_t length = lengths[static_cast<size_t>(conversation)];
            EXPECT_EQ(row.loss_mask[at], label_place >= length / 2 ? 1.0f : 0.0f);
          }
          trained += row.loss_mask[at] != 0.0f;
        }
        start = end;
      }
    }
    int64_t total = 0;
    for (size_t c = 0; c < lengths.size(); ++c) {
      total += lengths[c];
      for (int64_t t = 0; t < lengths[c]; ++t) {
        EXPECT_EQ(seen[1000 * static_cast<int64_t>(c) + t], 1) << "conversation " << c << " token " << t;
      }
    }
    EXPECT_EQ(real, total);
    EXPECT_EQ(dataset.report().real_tokens, total);
    EXPECT_EQ(dataset.report().trained_tokens, trained);
    EXPECT_EQ(dataset.report().capacity, dataset.size() * sequence_length);
    EXPECT_DOUBLE_EQ(dataset.report().efficiency(), static_cast<double>(total) / (dataset.size() * sequence_length));
  }
}

TEST(SftDataset, ShuffleIsDeterministicBySeed) {
  std::vector<int64_t> lengths(40, 5);
  auto rows_with_seed = [&](uint64_t seed) {
    SftDatasetOptions options = options_for(10, SftPacking::kFirstFit, true);
    options.seed = seed;
    return row_conversations(SftDataset(synthetic_set(lengths), options, kPad));
  };
  EXPECT_EQ(rows_with_seed(3), rows_with_seed(3));
  EXPECT_NE(rows_with_seed(3), rows_with_seed(4));
  // Unshuffled, 5-token conversations pair up in file order.
  EXPECT_EQ(row_conversations(SftDataset(synthetic_set({5, 5, 5}), options_for(10, SftPacking::kFirstFit), kPad)),
            (std::vector<std::vector<int64_t>>{{0, 1}, {2}}));
}

TEST(SftDataset, EpochsServeEveryRowOncePerEpochInANewOrder) {
  SftDatasetOptions options = options_for(10, SftPacking::kFirstFit, true);
  options.epochs = 3;
  SftDataset dataset(synthetic_set(std::vector<int64_t>(40, 5)), options, kPad);
  const int64_t rows = dataset.report().rows;
  ASSERT_EQ(rows, 20);  // two 5-token conversations per row
  ASSERT_EQ(dataset.size(), 3 * rows);
  std::vector<std::vector<std::vector<int64_t>>> epochs(3);
  for (int64_t i = 0; i < dataset.size(); ++i)
    epochs[static_cast<size_t>(i / rows)].push_back(dataset.sample(i).conversations);
  for (auto& epoch : epochs) {
    std::vector<std::vector<int64_t>> sorted = epoch;
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::vector<int64_t>> first = epochs[0];
    std::sort(first.begin(), first.end());
    EXPECT_EQ(sorted, first) << "an epoch is not a permutation of the rows";
  }
  EXPECT_NE(epochs[1], epochs[0]);
  EXPECT_NE(epochs[2], epochs[1]);
  options.epochs = 0;
  EXPECT_THROW(SftDataset(synthetic_set({5}), options, kPad), Error);
}

TEST(SftDataset, LongConversationsAreTruncatedOrSkippedAndCounted) {
  SftDatasetOptions options = options_for(10, SftPacking::kFirstFit);
  options.overflow = SftOverflow::kSkip;
  SftDataset skipped(synthetic_set({4, 12, 6}), options, kPad);
  EXPECT_EQ(skipped.report().skipped, 1);
  EXPECT_EQ(skipped.report().truncated, 0);
  EXPECT_EQ(row_conversations(skipped), (std::vector<std::vector<int64_t>>{{0, 2}}));
  options.overflow = SftOverflow::kTruncate;
  SftDataset truncated(synthetic_set({4, 12, 6}), options, kPad);
  EXPECT_EQ(truncated.report().truncated, 1);
  EXPECT_EQ(row_conversations(truncated), (std::vector<std::vector<int64_t>>{{0, 2}, {1}}));
  SftSample row = truncated.sample(1);
  EXPECT_EQ(row.document_lengths, (std::vector<int64_t>{10}));
  EXPECT_EQ(row.tokens.back(), 1009);
  EXPECT_EQ(row.labels.back(), kSftIgnoreIndex);
  // Trained labels (mask from the second half of the original length): 4 tokens -> 2 and 3;
  // 12 cut to 10 -> 6..9; 6 tokens -> 3..5; 2 + 4 + 3 = 9.
  EXPECT_EQ(truncated.report().summary(10),
            "3 conversations -> 2 rows of 10 tokens; packing efficiency 100.0% (20 of 20 tokens), 9 trained tokens; "
            "1 longer than the sequence: 1 truncated, 0 skipped");
}

TEST(SftDataset, ReadsBothJsonlShapesOfTheFixture) {
  ChatTemplate chat = ChatTemplate::for_family("gpt2", byte_tokenizer());
  std::vector<SftConversation> conversations = read_sft_conversations({testing::sft_fixture().string()}, chat);
  ASSERT_EQ(conversations.size(), 3u);  // the blank line 3 is skipped
  // Byte tokenizer, gpt2 template, counted by hand:
  //   line 1: "<|system|>\n" 11 + "Add." 4 + "\n" 1 + "<|user|>\n" 9 + "2+3" 3 + "\n" 1
  //           + "<|assistant|>\n" 14 + "5" 1 + EOD 1 = 45 tokens, 2 trained;
  //   line 2 (prompt/response): 9 + 11 + 1 + 14 + "1 2 3" 5 + 1 = 41, 6 trained;
  //   line 4: (9 + 3 + 1) + (14 + 2 + 1) + (9 + 6 + 1) + (14 + 2 + 1) = 63, 6 trained.
  const std::vector<size_t> lengths = {45, 41, 63};
  const std::vector<int> trained = {2, 6, 6};
  const std::vector<std::string> origins = {":1", ":2", ":4"};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(conversations[i].rendered.tokens.size(), lengths[i]) << i;
    int ones = 0;
    for (uint8_t bit : conversations[i].rendered.loss_mask) ones += bit;
    EXPECT_EQ(ones, trained[i]) << i;
    EXPECT_EQ(conversations[i].origin, testing::sft_fixture().string() + origins[i]);
  }
  // The prompt/response line renders as the same conversation written with messages.
  EXPECT_EQ(conversations[1].rendered.tokens,
            chat.render({{ChatRole::kUser, "Sort: 3 1 2"}, {ChatRole::kAssistant, "1 2 3"}}).tokens);
  // Packed in 64: 45 | 41 | 63 -> three rows, 149 of 192 tokens.
  std::shared_ptr<SftDataset> dataset = SftDataset::load({testing::sft_fixture().string()}, chat, byte_tokenizer(),
                                                         options_for(64, SftPacking::kFirstFit));
  EXPECT_EQ(dataset->size(), 3);
  EXPECT_EQ(dataset->report().real_tokens, 149);
  EXPECT_DOUBLE_EQ(dataset->report().efficiency(), 149.0 / 192.0);
  EXPECT_EQ(dataset->sample(0).tokens[45], testing::kByteEod);  // padding is EOD
}

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  return "(no error)";
}

TEST(SftDataset, BadInputIsOneLineNamingFileAndLine) {
  TemporaryFolder folder;
  ChatTemplate chat = ChatTemplate::for_family("gpt2", byte_tokenizer());
  const std::string good = R"({"prompt": "a", "response": "b"})";
  struct Case {
    std::string line3;
    std::string says;
  };
  const std::vector<Case> cases = {
      {R"({"messages": [{"content": "hi"}, {"role": "assistant", "content": "x"}]})", ":3: message 1 has no \"role\""},
      {R"({"messages": [{"role": "tool", "content": "hi"}]})", ":3: message 1: unknown role \"tool\""},
      {R"({"messages": [{"role": "user", "content": "hi"})", ":3: malformed JSON"},
      {R"({"messages": [{"role": "user", "content": 5}]})", ":3: message 1: \"content\" must be a string"},
      {R"({"messages": [{"role": "user", "content": "hi"}]})", ":3: the conversation has no assistant message"},
      {R"({"prompt": "only a prompt"})", ":3 has no \"response\""},
      {R"({"text": "pretraining text"})", ":3: expected {\"messages\": [...]}"},
      {R"([1, 2])", ":3: expected a JSON object"},
  };
  for (const Case& c : cases) {
    write_file_bytes(folder.file("bad.jsonl"), good + "\n" + good + "\n" + c.line3 + "\n" + good + "\n");
    const std::string message = error_of([&] { read_sft_conversations({folder.file("bad.jsonl")}, chat); });
    EXPECT_NE(message.find(folder.file("bad.jsonl") + c.says), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
  write_file_bytes(folder.file("empty.jsonl"), "\n\n");
  const std::string empty = error_of([&] { read_sft_conversations({folder.file("empty.jsonl")}, chat); });
  EXPECT_NE(empty.find(folder.file("empty.jsonl") + ": no conversations (the file is empty)"), std::string::npos)
      << empty;
  const std::string missing = error_of([&] { read_sft_conversations({folder.file("nope.jsonl")}, chat); });
  EXPECT_NE(missing.find("cannot open " + folder.file("nope.jsonl")), std::string::npos) << missing;
  EXPECT_NE(error_of([] { parse_sft_packing("best_fit"); }).find("choose first_fit or sequential"), std::string::npos);
  EXPECT_NE(error_of([] {
              SftDataset(synthetic_set({20}), options_for(10, SftPacking::kFirstFit), kPad);
            }).find("every one of the 1 conversations is longer than sequence_length 10"),
            std::string::npos);
}

TEST(SftDataset, DumpShowsDocumentsLabelsAndTheMask) {
  ChatTemplate chat = ChatTemplate::for_family("gpt2", byte_tokenizer());
  std::vector<SftConversation> conversations(1);
  conversations[0].rendered = chat.render({{ChatRole::kUser, "1+1"}, {ChatRole::kAssistant, "2"}});
  const size_t length = conversations[0].rendered.tokens.size();  // 9 + 3 + 1 + 14 + 1 + 1 = 29
  ASSERT_EQ(length, 29u);
  SftDataset dataset(std::move(conversations), options_for(31, SftPacking::kFirstFit), testing::kByteEod);
  const std::string dump = format_sft_sample(dataset.sample(0), byte_tokenizer());
  // Position 26 is the '\n' after <|assistant|>: its label '2' is trained; position 27 ('2')
  // predicts EOD, trained; 28 (EOD) ends the document; 29, 30 are padding.
  EXPECT_NE(dump.find("-- document 0 (29 tokens)\n"), std::string::npos) << dump;
  EXPECT_NE(dump.find("    26 |       10 | '\\n'                     |       50 | *\n"), std::string::npos) << dump;
  EXPECT_NE(dump.find("    27 |       50 | '2'                      |      256 | *\n"), std::string::npos) << dump;
  EXPECT_NE(dump.find("    28 |      256 | '<|endoftext|>'          |        - | .\n"), std::string::npos) << dump;
  EXPECT_NE(dump.find("-- padding (2 tokens)\n"), std::string::npos) << dump;
  EXPECT_EQ(std::count(dump.begin(), dump.end(), '*'), 2);
}

}  // namespace
}  // namespace tessera
