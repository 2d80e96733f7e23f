// GPT dataset semantics. Expectations are computed independently of the index code: splits
// and epoch plans by hand from Megatron's rules, the sample index against the plain model
// "sample j is tokens [j x L, j x L + L + 1) of the documents laid end to end", and the
// dataset's samples through token ids that encode where each token came from
// (id = 1000 x sequence + position), so a wrong document or offset shows in the ids.
#include "data/gpt_dataset.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "core/check.h"
#include "data/data_test_util.h"
#include "data/gpt_dataset_indices.h"
#include "data/gpt_dataset_split.h"
#include "data/indexed_dataset_writer.h"

namespace tessera {
namespace {

using testing::TemporaryFolder;

// ---- splits ----

TEST(GptDatasetSplit, ParsesAndNormalizesLikeMegatron) {
  auto weights = parse_split_weights("969,30,1");
  EXPECT_DOUBLE_EQ(weights[0], 0.969);
  EXPECT_DOUBLE_EQ(weights[1], 0.030);
  EXPECT_DOUBLE_EQ(weights[2], 0.001);
  auto two = parse_split_weights("98/2");
  EXPECT_DOUBLE_EQ(two[0], 0.98);
  EXPECT_DOUBLE_EQ(two[2], 0.0);
  EXPECT_DOUBLE_EQ(parse_split_weights(" 1 ")[0], 1.0);
}

TEST(GptDatasetSplit, RefusesMalformedSplits) {
  for (const std::string bad : {"", "a,b", "1,2,3,4", "0,0,0", "-1,2", "1,,2", "1e999"}) {
    EXPECT_THROW(parse_split_weights(bad), Error) << '"' << bad << '"';
  }
  try {
    parse_split_weights("90,x,1");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'x' is not a non-negative number"), std::string::npos) << e.what();
  }
}

TEST(GptDatasetSplit, RangesRoundHalfToEvenLikePython) {
  auto ranges = split_element_ranges(parse_split_weights("969,30,1"), 1000);
  EXPECT_EQ(ranges[0]->begin, 0);
  EXPECT_EQ(ranges[0]->end, 969);
  EXPECT_EQ(ranges[1]->begin, 969);
  EXPECT_EQ(ranges[1]->end, 999);
  EXPECT_EQ(ranges[2]->begin, 999);
  EXPECT_EQ(ranges[2]->end, 1000);
  // 0.5 x 5 = 2.5 rounds to 2 and 0.5 x 3 = 1.5 to 2 (Python's round), not 3 and 2.
  EXPECT_EQ(split_element_ranges(parse_split_weights("1,1"), 5)[0]->end, 2);
  EXPECT_EQ(split_element_ranges(parse_split_weights("1,1"), 3)[0]->end, 2);
  auto no_test = split_element_ranges(parse_split_weights("9,1,0"), 10);
  EXPECT_FALSE(no_test[2].has_value());
}

// ---- epochs ----

TEST(GptEpochPlan, MatchesMegatronsRules) {
  // One epoch of 1001 tokens holds (1001 - 1) / 10 = 100 samples.
  GptEpochPlan one = plan_gpt_epochs(1001, 10, 100);
  EXPECT_EQ(one.num_epochs, 1);
  EXPECT_FALSE(one.separate_final_epoch);
  // 101 samples need 1011 tokens: two epochs; 100 samples come before the final epoch, which
  // contributes 1 < 0.8 x 100, so it is shuffled separately.
  GptEpochPlan barely = plan_gpt_epochs(1001, 10, 101);
  EXPECT_EQ(barely.num_epochs, 2);
  EXPECT_TRUE(barely.separate_final_epoch);
  EXPECT_EQ(barely.samples_before_final_epoch, 100);
  // 190 samples: two epochs; 100 come before the final epoch, which contributes 90 >= 80.
  GptEpochPlan mostly = plan_gpt_epochs(1001, 10, 190);
  EXPECT_EQ(mostly.num_epochs, 2);
  EXPECT_FALSE(mostly.separate_final_epoch);
  EXPECT_EQ(plan_gpt_epochs(1001, 10, std::nullopt).num_epochs, 1);
}

// ---- sample index against the "documents laid end to end" model ----

TEST(GptSampleIndex, EverySampleIsTheNextWindowOfTheDocumentStream) {
  std::mt19937 engine(3);
  for (int trial = 0; trial < 20; ++trial) {
    const int sequences = 1 + static_cast<int>(engine() % 30);
    std::vector<int32_t> lengths(static_cast<size_t>(sequences));
    for (auto& length : lengths) length = static_cast<int32_t>(engine() % 50);  // zero-length sequences too
    lengths[0] = 7;
    const int64_t epochs = 1 + engine() % 3;
    std::vector<int32_t> document_index;
    for (int64_t e = 0; e < epochs; ++e) {
      for (int s = 0; s < sequences; ++s) document_index.push_back(s);
    }
    std::shuffle(document_index.begin(), document_index.end(), engine);
    int64_t tokens_per_epoch = 0;
    for (int32_t length : lengths) tokens_per_epoch += length;
    const int64_t L = 1 + engine() % 20;
    if (tokens_per_epoch * epochs < L + 1) continue;

    // The model: (document position, offset) of every token of the stream, in order.
    std::vector<std::pair<int64_t, int64_t>> stream;
    for (size_t p = 0; p < document_index.size(); ++p) {
      for (int64_t t = 0; t < lengths[static_cast<size_t>(document_index[p])]; ++t) stream.emplace_back(p, t);
    }
    std::vector<int64_t> index = build_gpt_sample_index(lengths, document_index, L, epochs, tokens_per_epoch);
    const int64_t samples = static_cast<int64_t>(index.size() / 2) - 1;
    ASSERT_EQ(samples, (epochs * tokens_per_epoch - 1) / L) << "trial " << trial;
    for (int64_t j = 0; j < samples; ++j) {
      // Read sample j as Megatron's GPTDataset does: from (position, offset) of entry j through
      // the token at (position, offset) of entry j + 1, inclusive.
      const int64_t first = index[static_cast<size_t>(2 * j)], first_offset = index[static_cast<size_t>(2 * j + 1)];
      const int64_t last = index[static_cast<size_t>(2 * j + 2)], last_offset = index[static_cast<size_t>(2 * j + 3)];
      std::vector<std::pair<int64_t, int64_t>> got;
      for (int64_t p = first; p <= last; ++p) {
        const int64_t end = p == last ? last_offset + 1 : lengths[static_cast<size_t>(document_index[p])];
        for (int64_t t = p == first ? first_offset : 0; t < end; ++t) got.emplace_back(p, t);
      }
      std::vector<std::pair<int64_t, int64_t>> want(stream.begin() + j * L, stream.begin() + j * L + L + 1);
      ASSERT_EQ(got, want) << "trial " << trial << " sample " << j;
    }
  }
}

// ---- datasets on disk ----

GptDatasetConfig config_for(int64_t sequence_length, uint32_t seed = 1234, std::string cache = "") {
  GptDatasetConfig config;
  config.sequence_length = sequence_length;
  config.random_seed = seed;
  config.path_to_cache = std::move(cache);
  return config;
}

// Sequence s of the test data has lengths[s] tokens with ids 1000 x s + position.
std::shared_ptr<const IndexedDataset> write_position_coded(const std::string& prefix,
                                                           const std::vector<int32_t>& lengths) {
  IndexedDatasetWriter writer(prefix, IndexedDType::Int32);
  for (size_t s = 0; s < lengths.size(); ++s) {
    std::vector<int32_t> tokens(static_cast<size_t>(lengths[s]));
    for (int32_t t = 0; t < lengths[s]; ++t) tokens[static_cast<size_t>(t)] = static_cast<int32_t>(1000 * s) + t;
    writer.add_document(tokens);
  }
  writer.finalize();
  return std::make_shared<IndexedDataset>(prefix);
}

std::vector<int32_t> random_lengths(int count, uint32_t seed) {
  std::mt19937 engine(seed);
  std::vector<int32_t> lengths(static_cast<size_t>(count));
  for (auto& length : lengths) length = 1 + static_cast<int32_t>(engine() % 120);
  return lengths;
}

// Checks that each sample's tokens are the tokens its pieces name, that the pieces are a run
// of whole documents cut only at the two ends, and that all come from `range`.
void expect_samples_come_from_their_pieces(const GptDataset& dataset, const IndexedDataset& indexed,
                                           ElementRange range) {
  for (int64_t i = 0; i < dataset.size(); ++i) {
    std::vector<int64_t> tokens = dataset.sample(i);
    std::vector<GptSamplePiece> pieces = dataset.sample_pieces(i);
    ASSERT_EQ(static_cast<int64_t>(tokens.size()), dataset.sequence_length() + 1);
    size_t k = 0;
    for (size_t p = 0; p < pieces.size(); ++p) {
      const GptSamplePiece& piece = pieces[p];
      EXPECT_GE(piece.sequence, range.begin);
      EXPECT_LT(piece.sequence, range.end);
      if (p > 0) {
        EXPECT_EQ(piece.offset, 0) << "sample " << i << ": a later piece starts inside its document";
      }
      if (p + 1 < pieces.size()) {
        EXPECT_EQ(piece.offset + piece.length, indexed.sequence_length(piece.sequence))
            << "sample " << i << ": an inner piece stops before its document ends";
      }
      for (int64_t t = 0; t < piece.length; ++t, ++k) {
        ASSERT_EQ(tokens[k], 1000 * piece.sequence + piece.offset + t) << "sample " << i << " token " << k;
      }
    }
    EXPECT_EQ(k, tokens.size());
  }
}

TEST(GptDataset, OneEpochTilesTheSplitWithoutRepeatingAnyInputToken) {
  TemporaryFolder folder;
  std::vector<int32_t> lengths = random_lengths(60, 11);
  auto indexed = write_position_coded(folder.file("data"), lengths);
  ElementRange range{10, 50};
  GptDataset dataset(indexed, DatasetSplit::Train, range, std::nullopt, config_for(16, 5));
  int64_t tokens = 0;
  for (int64_t s = range.begin; s < range.end; ++s) tokens += lengths[static_cast<size_t>(s)];
  EXPECT_EQ(dataset.size(), (tokens - 1) / 16);
  EXPECT_EQ(dataset.num_epochs(), 1);
  expect_samples_come_from_their_pieces(dataset, *indexed, range);

  std::set<int64_t> inputs;
  for (int64_t i = 0; i < dataset.size(); ++i) {
    std::vector<int64_t> sample = dataset.sample(i);
    for (int64_t t = 0; t < 16; ++t) {
      EXPECT_TRUE(inputs.insert(sample[static_cast<size_t>(t)]).second)
          << "token " << sample[static_cast<size_t>(t)] << " is an input of two samples in one epoch";
    }
  }
  EXPECT_EQ(static_cast<int64_t>(inputs.size()), dataset.size() * 16);
  EXPECT_GT(static_cast<int64_t>(inputs.size()), tokens - 17) << "an epoch leaves out more than one sample's tokens";
}

TEST(GptDataset, SeveralEpochsUseEachTokenOncePerEpochAtMost) {
  TemporaryFolder folder;
  std::vector<int32_t> lengths = random_lengths(20, 12);
  auto indexed = write_position_coded(folder.file("data"), lengths);
  ElementRange range{0, 20};
  GptDataset dataset(indexed, DatasetSplit::Train, range, 300, config_for(9));
  EXPECT_GE(dataset.size(), 300);
  EXPECT_GT(dataset.num_epochs(), 1);
  expect_samples_come_from_their_pieces(dataset, *indexed, range);
  std::map<int64_t, int64_t> uses;
  for (int64_t i = 0; i < dataset.size(); ++i) {
    std::vector<int64_t> sample = dataset.sample(i);
    for (int64_t t = 0; t < 9; ++t) ++uses[sample[static_cast<size_t>(t)]];
  }
  for (const auto& [token, count] : uses) EXPECT_LE(count, dataset.num_epochs()) << "token " << token;
}

TEST(GptDataset, SeedDecidesTheOrderAndTheSameSeedRepeatsIt) {
  TemporaryFolder folder;
  auto indexed = write_position_coded(folder.file("data"), random_lengths(40, 13));
  auto first_samples = [&](uint32_t seed) {
    GptDataset dataset(indexed, DatasetSplit::Train, {0, 40}, std::nullopt, config_for(8, seed));
    std::vector<std::vector<int64_t>> samples;
    for (int64_t i = 0; i < 10; ++i) samples.push_back(dataset.sample(i));
    return samples;
  };
  EXPECT_EQ(first_samples(1), first_samples(1));
  EXPECT_NE(first_samples(1), first_samples(2));
}

TEST(GptDataset, IndicesAreCachedBesideTheDataAndReused) {
  TemporaryFolder folder;
  std::string prefix = folder.file("data");
  auto indexed = write_position_coded(prefix, random_lengths(30, 14));
  GptDatasetConfig config = config_for(12, 9);
  GptDataset first(indexed, DatasetSplit::Valid, {3, 30}, 50, config);
  EXPECT_TRUE(first.built_anew());
  EXPECT_EQ(std::filesystem::path(first.cache_prefix()).parent_path(),
            std::filesystem::path(prefix) / "cache" / "GPTDataset_indices");
  for (const char* part : {"-description.txt", "-document_index.npy", "-sample_index.npy", "-shuffle_index.npy"}) {
    EXPECT_TRUE(std::filesystem::exists(first.cache_prefix() + part)) << part;
  }
  GptDataset again(indexed, DatasetSplit::Valid, {3, 30}, 50, config);
  EXPECT_FALSE(again.built_anew());
  ASSERT_EQ(again.size(), first.size());
  for (int64_t i = 0; i < first.size(); ++i) EXPECT_EQ(again.sample(i), first.sample(i));

  GptDataset other_seed(indexed, DatasetSplit::Valid, {3, 30}, 50, config_for(12, 10));
  EXPECT_TRUE(other_seed.built_anew());
  EXPECT_NE(other_seed.cache_prefix(), first.cache_prefix());
}

TEST(GptDataset, ADamagedCacheIsRebuiltWithAWarning) {
  TemporaryFolder folder;
  auto indexed = write_position_coded(folder.file("data"), random_lengths(30, 15));
  GptDatasetConfig config = config_for(12, 1234, folder.file("my_cache"));
  std::vector<int64_t> want;
  std::string cache_prefix;
  {
    GptDataset dataset(indexed, DatasetSplit::Train, {0, 30}, std::nullopt, config);
    want = dataset.sample(0);
    cache_prefix = dataset.cache_prefix();
  }
  EXPECT_EQ(std::filesystem::path(cache_prefix).parent_path(), std::filesystem::path(folder.file("my_cache")));
  std::filesystem::resize_file(cache_prefix + "-sample_index.npy", 70);
  ::testing::internal::CaptureStderr();
  GptDataset rebuilt(indexed, DatasetSplit::Train, {0, 30}, std::nullopt, config);
  std::string warning = ::testing::internal::GetCapturedStderr();
  EXPECT_TRUE(rebuilt.built_anew());
  EXPECT_NE(warning.find("cannot be used"), std::string::npos) << warning;
  EXPECT_EQ(rebuilt.sample(0), want);
}

TEST(GptDataset, RefusesASequenceLengthLongerThanTheData) {
  TemporaryFolder folder;
  auto indexed = write_position_coded(folder.file("data"), {5, 6, 7});
  try {
    GptDataset dataset(indexed, DatasetSplit::Train, {0, 3}, std::nullopt, config_for(18));
    FAIL() << "18 + 1 tokens per sample from 18 tokens";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("holds 18 tokens"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("fewer than one sample of sequence_length + 1 = 19"), std::string::npos);
  }
  GptDataset just_enough(indexed, DatasetSplit::Train, {0, 3}, std::nullopt, config_for(17));
  EXPECT_EQ(just_enough.size(), 1);
  EXPECT_THROW(GptDataset(indexed, DatasetSplit::Train, {0, 4}, std::nullopt, config_for(4)), Error);
  EXPECT_THROW(GptDataset(indexed, DatasetSplit::Train, {0, 3}, std::nullopt, config_for(0)), Error);
  EXPECT_THROW(just_enough.sample(1), Error);
}

}  // namespace
}  // namespace tessera
