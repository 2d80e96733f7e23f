// SFT through the DataLoader: each data-parallel rank gets the SFT rows Megatron's sampler
// rule names (micro batch > 1), with labels, loss mask and document lengths row by row; a
// resumed loader continues exactly; pretraining batches keep the new fields empty.
// scripts/make_arithmetic_chat.py: deterministic by seed, test prompts unseen in training,
// every answer checked here independently (sums and sorted lists recomputed in C++), the
// preference pairs' chosen answer right and rejected answer wrong, and its output loads.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "data/loader.h"
#include "data/sft_dataset.h"
#include "sft_test_util.h"

namespace tessera {
namespace {

using testing::synthetic_set;
using testing::TemporaryFolder;

std::shared_ptr<SftDataset> twelve_rows() {
  // 24 conversations of 5 + (i % 4) tokens, unshuffled, first-fit in rows of 16.
  std::vector<int64_t> lengths;
  for (int i = 0; i < 24; ++i) lengths.push_back(5 + i % 4);
  SftDatasetOptions options;
  options.sequence_length = 16;
  options.shuffle = false;
  return std::make_shared<SftDataset>(synthetic_set(lengths), options, 0);
}

DataLoaderOptions loader_options(int64_t micro_batch, int64_t rank, int64_t ranks, int64_t consumed = 0) {
  DataLoaderOptions options;
  options.micro_batch_size = micro_batch;
  options.data_parallel_rank = rank;
  options.data_parallel_size = ranks;
  options.consumed_samples = consumed;
  return options;
}

void expect_rows(const MicroBatch& batch, const SftDataset& dataset, int64_t first_row) {
  const auto length = static_cast<size_t>(dataset.sequence_length());
  ASSERT_EQ(batch.tokens.size(), batch.rows * length);
  ASSERT_EQ(batch.loss_mask.size(), batch.rows * length);
  ASSERT_EQ(batch.document_lengths.size(), static_cast<size_t>(batch.rows));
  for (int64_t r = 0; r < batch.rows; ++r) {
    SftSample sample = dataset.sample(first_row + r);
    const auto offset = static_cast<std::ptrdiff_t>(r * batch.sequence_length);
    const auto take = static_cast<std::ptrdiff_t>(length);
    EXPECT_EQ(std::vector<int64_t>(batch.tokens.begin() + offset, batch.tokens.begin() + offset + take), sample.tokens);
    EXPECT_EQ(std::vector<int64_t>(batch.labels.begin() + offset, batch.labels.begin() + offset + take), sample.labels);
    EXPECT_EQ(std::vector<float>(batch.loss_mask.begin() + offset, batch.loss_mask.begin() + offset + take),
              sample.loss_mask);
    EXPECT_EQ(batch.document_lengths[static_cast<size_t>(r)], sample.document_lengths);
    EXPECT_EQ(batch.sample_indices[static_cast<size_t>(r)], first_row + r);
  }
}

TEST(SftLoader, EachRankTakesItsSftRowsWithMaskAndDocumentLengths) {
  std::shared_ptr<SftDataset> dataset = twelve_rows();
  ASSERT_GE(dataset->size(), 8);
  const int64_t groups = dataset->size() / 4;  // 2 ranks x micro batch 2
  for (int64_t rank = 0; rank < 2; ++rank) {
    DataLoader loader(dataset, loader_options(2, rank, 2));
    for (int64_t k = 0; k < groups; ++k) {
      std::optional<MicroBatch> batch = loader.next();
      ASSERT_TRUE(batch);
      expect_rows(*batch, *dataset, 4 * k + 2 * rank);
      EXPECT_EQ(batch->consumed_samples, 4 * (k + 1));
    }
    EXPECT_FALSE(loader.next());
  }
}

TEST(SftLoader, ResumingFromConsumedSamplesContinuesExactly) {
  std::shared_ptr<SftDataset> dataset = twelve_rows();
  DataLoader uninterrupted(dataset, loader_options(3, 0, 1));
  uninterrupted.next();
  std::optional<MicroBatch> second = uninterrupted.next();
  DataLoader resumed(dataset, loader_options(3, 0, 1, 3));
  std::optional<MicroBatch> first_after_resume = resumed.next();
  ASSERT_TRUE(second && first_after_resume);
  EXPECT_EQ(first_after_resume->tokens, second->tokens);
  EXPECT_EQ(first_after_resume->loss_mask, second->loss_mask);
  EXPECT_EQ(first_after_resume->document_lengths, second->document_lengths);
}

class TwoSamples : public TokenSampleDataset {
 public:
  int64_t size() const override { return 2; }
  int64_t sequence_length() const override { return 3; }
  std::vector<int64_t> sample(int64_t index) const override { return {index, index + 1, index + 2, index + 3}; }
};

TEST(SftLoader, PretrainingBatchesLeaveMaskAndDocumentsEmpty) {
  DataLoader loader(std::make_shared<TwoSamples>(), loader_options(2, 0, 1));
  std::optional<MicroBatch> batch = loader.next();
  ASSERT_TRUE(batch);
  EXPECT_EQ(batch->tokens, (std::vector<int64_t>{0, 1, 2, 1, 2, 3}));
  EXPECT_TRUE(batch->loss_mask.empty());
  EXPECT_TRUE(batch->document_lengths.empty());
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::istringstream stream(testing::read_file_bytes(path));
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(stream, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// The right answer to a prompt, recomputed here.
std::string solve(const std::string& prompt) {
  std::smatch match;
  if (std::regex_match(prompt, match, std::regex(R"(What is (\d+) \+ (\d+)\?)"))) {
    return std::to_string(std::stoll(match[1]) + std::stoll(match[2]));
  }
  const std::string lead = "Sort in ascending order: ";
  EXPECT_EQ(prompt.rfind(lead, 0), 0u) << prompt;
  std::vector<int64_t> numbers;
  std::istringstream list(prompt.substr(lead.size()));
  for (std::string item; std::getline(list, item, ',');) numbers.push_back(std::stoll(item));
  std::sort(numbers.begin(), numbers.end());
  std::string answer;
  for (size_t i = 0; i < numbers.size(); ++i) answer += (i ? ", " : "") + std::to_string(numbers[i]);
  return answer;
}

int run_script(const std::string& arguments) {
  const std::string script = (testing::repository_root() / "scripts/make_arithmetic_chat.py").string();
  return std::system(("python3 " + script + " " + arguments + " > /dev/null").c_str());
}

TEST(ArithmeticChat, AnswersCheckAndTheDataLoads) {
  if (!testing::python3_available()) GTEST_SKIP() << "python3 not found";
  TemporaryFolder a, b;
  ASSERT_EQ(run_script("--out " + a.path().string() + " --train 300 --test 60 --seed 3 --system Calc"), 0);
  ASSERT_EQ(run_script("--out " + b.path().string() + " --train 300 --test 60 --seed 3 --system Calc"), 0);
  EXPECT_EQ(testing::read_file_bytes(a.file("train.jsonl")), testing::read_file_bytes(b.file("train.jsonl")));
  std::set<std::string> test_prompts;
  for (const std::string name : {"test.jsonl", "train.jsonl"}) {
    std::vector<nlohmann::json> lines = read_jsonl(a.file(name));
    EXPECT_EQ(lines.size(), name == "test.jsonl" ? 60u : 300u);
    for (const nlohmann::json& line : lines) {
      const nlohmann::json& messages = line["messages"];
      ASSERT_EQ(messages.size(), 3u);
      EXPECT_EQ(messages[0]["content"], "Calc");
      const std::string prompt = messages[1]["content"];
      EXPECT_EQ(messages[2]["content"], solve(prompt)) << prompt;
      if (name == "test.jsonl") {
        test_prompts.insert(prompt);
      } else {
        EXPECT_EQ(test_prompts.count(prompt), 0u) << "a test prompt is in the training data: " << prompt;
      }
    }
  }
  EXPECT_EQ(test_prompts.size(), 60u);
  ChatTemplate chat = ChatTemplate::for_family("gpt2", testing::byte_tokenizer());
  SftDatasetOptions options;
  options.sequence_length = 256;
  std::shared_ptr<SftDataset> dataset =
      SftDataset::load({a.file("train.jsonl")}, chat, testing::byte_tokenizer(), options);
  EXPECT_EQ(dataset->report().conversations, 300);
  DataLoader loader(dataset, loader_options(4, 0, 1));
  EXPECT_EQ(loader.remaining_micro_batches(), dataset->size() / 4);
  ASSERT_TRUE(loader.next());
}

TEST(ArithmeticChat, PairsPreferTheRightAnswer) {
  if (!testing::python3_available()) GTEST_SKIP() << "python3 not found";
  TemporaryFolder folder;
  ASSERT_EQ(run_script("--out " + folder.path().string() + " --train 200 --test 20 --seed 4 --pairs"), 0);
  for (const nlohmann::json& line : read_jsonl(folder.file("train_pairs.jsonl"))) {
    const std::string prompt = line["prompt"];
    EXPECT_EQ(line["chosen"], solve(prompt)) << prompt;
    EXPECT_NE(line["rejected"], solve(prompt)) << prompt;
  }
}

}  // namespace
}  // namespace tessera
