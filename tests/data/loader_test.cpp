// DataLoader: each data-parallel rank's rows, worked out by hand from Megatron's sampler rule;
// labels are the tokens shifted by one; resuming from a consumed-sample count gives exactly
// the micro-batches of an uninterrupted run (on a real GPT dataset); the end of the data, an
// error on the prefetch thread, and bad options.
#include "data/loader.h"

#include <gtest/gtest.h>

#include <atomic>

#include "core/check.h"
#include "data/data_test_util.h"
#include "data/gpt_dataset.h"
#include "data/indexed_dataset_writer.h"

namespace tessera {
namespace {

// Sample i is {i, i + 1, ..., i + L}: its first token names it.
class CountingDataset : public TokenSampleDataset {
 public:
  CountingDataset(int64_t size, int64_t sequence_length, int64_t fail_at = -1)
      : size_(size), sequence_length_(sequence_length), fail_at_(fail_at) {}
  int64_t size() const override { return size_; }
  int64_t sequence_length() const override { return sequence_length_; }
  std::vector<int64_t> sample(int64_t index) const override {
    TS_CHECK(index != fail_at_, "sample ", index, " is unreadable");
    ++reads_;
    std::vector<int64_t> tokens(static_cast<size_t>(sequence_length_ + 1));
    for (int64_t t = 0; t <= sequence_length_; ++t) tokens[static_cast<size_t>(t)] = index + t;
    return tokens;
  }
  int64_t reads() const { return reads_; }

 private:
  int64_t size_, sequence_length_, fail_at_;
  mutable std::atomic<int64_t> reads_{0};
};

DataLoaderOptions options_for(int64_t micro_batch_size, int64_t rank, int64_t ranks, int64_t consumed = 0) {
  DataLoaderOptions options;
  options.micro_batch_size = micro_batch_size;
  options.data_parallel_rank = rank;
  options.data_parallel_size = ranks;
  options.consumed_samples = consumed;
  return options;
}

TEST(DataLoader, EachRankTakesItsSliceOfEveryGlobalMicroBatch) {
  // 3 ranks x micro-batch 2: global micro-batch k is samples [6k, 6k + 6); rank r takes
  // [6k + 2r, 6k + 2r + 2). 20 samples make 3 whole groups; samples 18, 19 are left over.
  auto dataset = std::make_shared<CountingDataset>(20, 4);
  for (int64_t rank = 0; rank < 3; ++rank) {
    DataLoader loader(dataset, options_for(2, rank, 3));
    EXPECT_EQ(loader.remaining_micro_batches(), 3);
    for (int64_t k = 0; k < 3; ++k) {
      std::optional<MicroBatch> batch = loader.next();
      ASSERT_TRUE(batch) << "rank " << rank << " micro-batch " << k;
      EXPECT_EQ(batch->sample_indices, (std::vector<int64_t>{6 * k + 2 * rank, 6 * k + 2 * rank + 1}));
      EXPECT_EQ(batch->consumed_samples, 6 * (k + 1));
      EXPECT_EQ(loader.consumed_samples(), 6 * (k + 1));
      ASSERT_EQ(batch->tokens.size(), 8u);
      for (int64_t row = 0; row < 2; ++row) {
        const int64_t sample = 6 * k + 2 * rank + row;
        for (int64_t t = 0; t < 4; ++t) {
          EXPECT_EQ(batch->tokens[static_cast<size_t>(4 * row + t)], sample + t);
          EXPECT_EQ(batch->labels[static_cast<size_t>(4 * row + t)], sample + t + 1);
        }
      }
    }
    EXPECT_FALSE(loader.next()) << "a partial global micro-batch was handed out";
    EXPECT_FALSE(loader.next());
  }
}

std::shared_ptr<GptDataset> small_gpt_dataset(const testing::TemporaryFolder& folder) {
  IndexedDatasetWriter writer(folder.file("data"), IndexedDType::UInt16);
  for (int d = 0; d < 50; ++d) {
    std::vector<int32_t> tokens(static_cast<size_t>(20 + (d * 7) % 31));
    for (size_t t = 0; t < tokens.size(); ++t) tokens[t] = static_cast<int32_t>(100 * d + t);
    writer.add_document(tokens);
  }
  writer.finalize();
  GptDatasetConfig config;
  config.sequence_length = 8;
  return std::make_shared<GptDataset>(std::make_shared<IndexedDataset>(folder.file("data")), DatasetSplit::Train,
                                      ElementRange{0, 50}, 400, config);
}

TEST(DataLoader, ResumingFromTheConsumedSampleCountRepeatsTheUninterruptedRun) {
  testing::TemporaryFolder folder;
  auto dataset = small_gpt_dataset(folder);
  for (int64_t rank = 0; rank < 2; ++rank) {
    std::vector<MicroBatch> uninterrupted;
    {
      DataLoader loader(dataset, options_for(3, rank, 2));
      while (auto batch = loader.next()) uninterrupted.push_back(std::move(*batch));
    }
    ASSERT_EQ(static_cast<int64_t>(uninterrupted.size()), dataset->size() / 6);
    // Stop after 7 micro-batches, as a checkpoint would, and resume from its count.
    int64_t checkpoint = 0;
    {
      DataLoader loader(dataset, options_for(3, rank, 2));
      for (int i = 0; i < 7; ++i) checkpoint = loader.next()->consumed_samples;
      EXPECT_EQ(loader.consumed_samples(), checkpoint);
    }
    DataLoader resumed(dataset, options_for(3, rank, 2, checkpoint));
    for (size_t i = 7; i < uninterrupted.size(); ++i) {
      std::optional<MicroBatch> batch = resumed.next();
      ASSERT_TRUE(batch) << "micro-batch " << i;
      EXPECT_EQ(batch->sample_indices, uninterrupted[i].sample_indices) << "micro-batch " << i;
      EXPECT_EQ(batch->tokens, uninterrupted[i].tokens) << "micro-batch " << i;
      EXPECT_EQ(batch->labels, uninterrupted[i].labels) << "micro-batch " << i;
    }
    EXPECT_FALSE(resumed.next());
  }
}

TEST(DataLoader, PrefetchesOnlyAFewMicroBatchesAhead) {
  auto dataset = std::make_shared<CountingDataset>(1000, 4);
  DataLoaderOptions options = options_for(1, 0, 1);
  options.prefetch_micro_batches = 3;
  DataLoader loader(dataset, options);
  ASSERT_TRUE(loader.next());
  // One handed out, three queued and a fifth read and waiting for room: never more.
  for (int spin = 0; spin < 10000 && dataset->reads() < 5; ++spin) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(dataset->reads(), 5);
}  // destroying a loader whose prefetch thread waits on a full queue must not hang

TEST(DataLoader, AnErrorReadingASampleReachesTheCallerAfterTheGoodBatches) {
  auto dataset = std::make_shared<CountingDataset>(10, 4, /*fail_at=*/5);
  DataLoader loader(dataset, options_for(2, 0, 1));
  EXPECT_TRUE(loader.next());  // samples 0, 1
  EXPECT_TRUE(loader.next());  // samples 2, 3
  try {
    loader.next();
    FAIL() << "the unreadable sample 5 was not reported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("sample 5 is unreadable"), std::string::npos) << e.what();
  }
}

TEST(DataLoader, RefusesBadOptions) {
  auto dataset = std::make_shared<CountingDataset>(10, 4);
  EXPECT_THROW(DataLoader(dataset, options_for(0, 0, 1)), Error);
  EXPECT_THROW(DataLoader(dataset, options_for(1, 2, 2)), Error);
  EXPECT_THROW(DataLoader(dataset, options_for(1, -1, 2)), Error);
  try {
    DataLoader loader(dataset, options_for(1, 0, 1, 11));
    FAIL() << "consumed_samples beyond the dataset was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("consumed_samples 11 is outside the dataset's 10 samples"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(DataLoader(nullptr, options_for(1, 0, 1)), Error);
}

}  // namespace
}  // namespace tessera
