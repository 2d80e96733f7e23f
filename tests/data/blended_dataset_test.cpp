// Blending: the quota-method order (worked out by hand for a small case), every dataset
// within one sample of its share after any number of samples (which Megatron's greedy order
// does not guarantee; see blended_dataset.h), samples
// routed to the right dataset in that dataset's own order, and the errors for blends that
// cannot be served. The builder is checked on real GPT datasets split "8,1,1".
#include "data/blended_dataset.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/check.h"
#include "data/blended_dataset_builder.h"
#include "data/data_test_util.h"
#include "data/indexed_dataset_writer.h"

namespace tessera {
namespace {

// Sample k of dataset `id` is {id, k, k, ...}: it says where it came from.
class LabelledDataset : public TokenSampleDataset {
 public:
  LabelledDataset(int64_t id, int64_t size, int64_t sequence_length = 3)
      : id_(id), size_(size), sequence_length_(sequence_length) {}
  int64_t size() const override { return size_; }
  int64_t sequence_length() const override { return sequence_length_; }
  std::vector<int64_t> sample(int64_t index) const override {
    TS_CHECK(index >= 0 && index < size_, "sample ", index, " of ", size_);
    std::vector<int64_t> tokens(static_cast<size_t>(sequence_length_ + 1), index);
    tokens[0] = id_;
    return tokens;
  }

 private:
  int64_t id_, size_, sequence_length_;
};

TEST(BlendingIndices, FollowTheQuotaMethodWorkedByHand) {
  // Weights 0.5, 0.25, 0.25 (exact in binary, so ties are real ties, won by the first).
  // Sample n goes, among datasets with taken < w x n, to the largest w / (taken + 1):
  //   n=1: all eligible, 0.5 > 0.25       -> 0    n=5: 0 (0.5/3 > 0.25/2)          -> 0
  //   n=2: 0 is at 1 = 0.5 x 2; 1 ties 2  -> 1    n=6: 0 at quota; 1 ties 2        -> 1
  //   n=3: 0 (0.25) ties 2 (0.25)         -> 0    n=7: 0 (0.125) ties 2; 1 at quota -> 0
  //   n=4: 0 and 1 at quota               -> 2    n=8: only 2 below quota          -> 2
  BlendingIndices indices = build_blending_indices({2, 1, 1}, 8);
  EXPECT_EQ(indices.dataset, (std::vector<int16_t>{0, 1, 0, 2, 0, 1, 0, 2}));
  EXPECT_EQ(indices.dataset_sample, (std::vector<int64_t>{0, 0, 1, 0, 2, 1, 3, 1}));
}

TEST(BlendingIndices, EveryDatasetStaysWithinOneSampleOfItsShare) {
  std::mt19937 engine(21);
  for (int trial = 0; trial < 40; ++trial) {
    const size_t datasets = 2 + engine() % 7;
    std::vector<double> weights(datasets);
    double total = 0;
    // Skewed weights too (cubed): small shares are where a greedy order drifts most.
    const double power = trial % 2 ? 1.0 : 3.0;
    for (auto& weight : weights) {
      total += weight = 0.001 + std::pow(std::uniform_real_distribution<double>(0, 1)(engine), power);
    }
    const int64_t size = 5000;
    BlendingIndices indices = build_blending_indices(weights, size);
    std::vector<int64_t> taken(datasets, 0);
    for (int64_t n = 1; n <= size; ++n) {
      ++taken[static_cast<size_t>(indices.dataset[static_cast<size_t>(n - 1)])];
      for (size_t d = 0; d < datasets; ++d) {
        const double share = weights[d] / total * static_cast<double>(n);
        ASSERT_LE(std::abs(static_cast<double>(taken[d]) - share), 1.0 + 1e-9)
            << "trial " << trial << ", dataset " << d << " after " << n << " samples";
      }
    }
  }
}

TEST(BlendingIndices, TheOneSampleBoundIsNotTrivial) {
  // Negative control: Megatron's greedy order (largest w x max(i, 1) - taken) breaks the bound
  // above for some of the same kind of weights, so the bound tests something.
  std::mt19937 engine(21);
  double worst = 0;
  for (int trial = 0; trial < 40; ++trial) {
    std::vector<double> weights(2 + engine() % 7);
    double total = 0;
    for (auto& weight : weights)
      total += weight = 0.001 + std::pow(std::uniform_real_distribution<double>(0, 1)(engine), 3.0);
    for (auto& weight : weights) weight /= total;
    std::vector<int64_t> taken(weights.size(), 0);
    for (int64_t i = 0; i < 5000; ++i) {
      size_t behind = 0;
      for (size_t d = 1; d < weights.size(); ++d) {
        const double target = std::max(static_cast<double>(i), 1.0);
        if (weights[d] * target - taken[d] > weights[behind] * target - taken[behind]) behind = d;
      }
      ++taken[behind];
      for (size_t d = 0; d < weights.size(); ++d) {
        worst = std::max(worst, std::abs(taken[d] - weights[d] * static_cast<double>(i + 1)));
      }
    }
  }
  EXPECT_GT(worst, 1.0);
}

TEST(BlendedDataset, RoutesEachSampleToItsDatasetInThatDatasetsOrder) {
  std::vector<std::shared_ptr<const TokenSampleDataset>> parts = {std::make_shared<LabelledDataset>(0, 60),
                                                                  std::make_shared<LabelledDataset>(1, 40),
                                                                  std::make_shared<LabelledDataset>(2, 30)};
  BlendedDataset blended(parts, {0.5, 0.3, 0.2}, 100);
  EXPECT_EQ(blended.size(), 100);
  std::vector<int64_t> next(3, 0);
  for (int64_t i = 0; i < blended.size(); ++i) {
    std::vector<int64_t> sample = blended.sample(i);
    const int64_t d = sample[0];
    EXPECT_EQ(d, blended.dataset_of(i));
    EXPECT_EQ(sample[1], next[static_cast<size_t>(d)]++) << "dataset " << d << " skipped or repeated a sample";
  }
  EXPECT_EQ(next, (std::vector<int64_t>{50, 30, 20}));
}

TEST(BlendedDataset, RefusesBlendsItCannotServe) {
  auto small = std::make_shared<LabelledDataset>(1, 10);
  auto big = std::make_shared<LabelledDataset>(0, 100);
  try {
    BlendedDataset blended({big, small}, {0.5, 0.5}, 100);
    FAIL() << "dataset 1 cannot give 50 samples";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("must give 50 of the 100 samples but has only 10"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(BlendedDataset({big, small}, {0.0, 0.0}, 10), Error);
  EXPECT_THROW(BlendedDataset({big, small}, {1.0}, 10), Error);
  EXPECT_THROW(BlendedDataset({big, std::make_shared<LabelledDataset>(1, 100, 4)}, {1, 1}, 10), Error);
}

TEST(DataBlend, ParsesMegatronDataPaths) {
  DataBlend single = parse_data_blend({"/data/web_text_document"});
  EXPECT_EQ(single.prefixes, std::vector<std::string>{"/data/web_text_document"});
  EXPECT_TRUE(single.weights.empty());
  DataBlend pair = parse_data_blend({"0.3", "a", "0.7", "b"});
  EXPECT_EQ(pair.prefixes, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(pair.weights, (std::vector<double>{0.3, 0.7}));
  EXPECT_THROW(parse_data_blend({}), Error);
  EXPECT_THROW(parse_data_blend({"0.3", "a", "b"}), Error);
  EXPECT_THROW(parse_data_blend({"a", "0.3", "b", "0.7"}), Error);
}

void write_dataset(const std::string& prefix, int32_t first_id, int documents) {
  IndexedDatasetWriter writer(prefix, IndexedDType::Int32);
  for (int d = 0; d < documents; ++d) writer.add_document(std::vector<int32_t>(50, first_id + d));
  writer.finalize();
}

TEST(BlendedDatasetBuilder, BuildsBlendedSplitsOfTheRequestedSizesAndShares) {
  testing::TemporaryFolder folder;
  // Dataset A's tokens are 0..99 (its document ids), dataset B's 1000..1099.
  write_dataset(folder.file("a"), 0, 100);
  write_dataset(folder.file("b"), 1000, 100);
  GptDatasetConfig config;
  config.sequence_length = 16;
  SplitDatasets splits = build_gpt_split_datasets(parse_data_blend({"1", folder.file("a"), "3", folder.file("b")}),
                                                  "8,1,1", {400, 40, 40}, config);
  ASSERT_TRUE(splits[0] && splits[1] && splits[2]);
  EXPECT_EQ(splits[0]->size(), 400);
  EXPECT_EQ(splits[1]->size(), 40);
  int64_t from_b = 0;
  for (int64_t i = 0; i < splits[0]->size(); ++i) {
    std::vector<int64_t> sample = splits[0]->sample(i);
    from_b += sample[0] >= 1000;
    // Train uses documents [0, 80) of each dataset.
    for (int64_t token : sample) EXPECT_LT(token % 1000, 80) << "a train sample reads a valid/test document";
  }
  EXPECT_EQ(from_b, 300);
  for (int64_t i = 0; i < splits[1]->size(); ++i) {
    for (int64_t token : splits[1]->sample(i)) {
      EXPECT_TRUE(token % 1000 >= 80 && token % 1000 < 90) << "a valid sample reads document " << token % 1000;
    }
  }
}

TEST(BlendedDatasetBuilder, SinglePrefixWithoutWeightsAndAbsentSplits) {
  testing::TemporaryFolder folder;
  write_dataset(folder.file("a"), 0, 100);
  GptDatasetConfig config;
  config.sequence_length = 16;
  SplitDatasets splits =
      build_gpt_split_datasets(parse_data_blend({folder.file("a")}), "9,1,0", {std::nullopt, 0, 10}, config);
  ASSERT_TRUE(splits[0]);
  EXPECT_EQ(splits[0]->size(), (90 * 50 - 1) / 16);  // one epoch of train
  EXPECT_FALSE(splits[1]);                           // 0 samples asked
  EXPECT_FALSE(splits[2]);                           // weight 0
}

}  // namespace
}  // namespace tessera
