// NumpyRandomState and the GPT document/shuffle index builders against numpy itself: the
// fixture tests/reference/fixtures/numpy_shuffle_fixture.json was written by numpy 2.5
// (tests/reference/numpy_shuffle_fixture.py, run where numpy is installed), including the
// document and shuffle indices computed with Megatron-LM's own construction. The .npy files
// beside it were written by numpy.save: we read them and write the same bytes.
#include "data/numpy_random_state.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <numeric>

#include "data/data_test_util.h"
#include "data/gpt_dataset_indices.h"
#include "data/npy_array.h"

namespace tessera {
namespace {

std::string fixture_path(const std::string& name) {
  return (testing::repository_root() / "tests/reference/fixtures" / name).string();
}

const nlohmann::json& fixture() {
  static const nlohmann::json parsed =
      nlohmann::json::parse(testing::read_file_bytes(fixture_path("numpy_shuffle_fixture.json")));
  return parsed;
}

template <typename T>
std::vector<T> shuffled_range(int64_t n, NumpyRandomState& random) {
  std::vector<T> values(static_cast<size_t>(n));
  std::iota(values.begin(), values.end(), T{0});
  random.shuffle(std::span<T>(values));
  return values;
}

TEST(NumpyRandomState, ShufflesExactlyAsNumpyRandomState) {
  int cases = 0;
  for (const auto& c : fixture()["shuffles"]) {
    NumpyRandomState random(c["seed"].get<uint32_t>());
    const int64_t n = c["n"];
    EXPECT_EQ(shuffled_range<int32_t>(n, random), c["first"].get<std::vector<int32_t>>())
        << "seed " << c["seed"] << " n " << n;
    EXPECT_EQ(shuffled_range<int64_t>(n, random), c["second"].get<std::vector<int64_t>>())
        << "seed " << c["seed"] << " n " << n << " (second shuffle of the same stream)";
    ++cases;
  }
  EXPECT_EQ(cases, 24);
}

TEST(NumpyRandomState, ShufflesAMillionElementsAsNumpy) {
  const auto& large = fixture()["large"];
  NumpyRandomState random(large["seed"].get<uint32_t>());
  std::vector<int64_t> values = shuffled_range<int64_t>(large["n"], random);
  std::vector<int64_t> head(values.begin(), values.begin() + 16);
  EXPECT_EQ(head, large["head"].get<std::vector<int64_t>>());
  const unsigned __int128 modulus = (uint64_t{1} << 61) - 1;
  unsigned __int128 checksum = 0;
  for (size_t i = 0; i < values.size(); ++i) checksum = (checksum + i * static_cast<uint64_t>(values[i])) % modulus;
  EXPECT_EQ(static_cast<uint64_t>(checksum), large["checksum"].get<uint64_t>());
}

TEST(NumpyRandomState, AnotherSeedGivesAnotherOrder) {
  // Negative control: the comparisons above would catch a wrong seed.
  const auto& c = fixture()["shuffles"][5];  // seed 1234, n 1000
  NumpyRandomState random(c["seed"].get<uint32_t>() + 1);
  EXPECT_NE(shuffled_range<int32_t>(c["n"], random), c["first"].get<std::vector<int32_t>>());
}

TEST(GptDatasetIndices, DocumentAndShuffleIndicesEqualMegatronsBuiltWithNumpy) {
  for (const auto& c : fixture()["megatron"]) {
    NumpyRandomState random(c["seed"].get<uint32_t>());
    std::vector<int32_t> document_index =
        build_gpt_document_index(c["begin"], c["end"], c["epochs"], c["separate_final_epoch"], random);
    EXPECT_EQ(document_index, c["document_index"].get<std::vector<int32_t>>()) << c["begin"] << ".." << c["end"];
    std::vector<int64_t> shuffle_index = build_gpt_shuffle_index(c["shuffle_first_part"], c["shuffle_total"], random);
    EXPECT_EQ(shuffle_index, c["shuffle_index"].get<std::vector<int64_t>>()) << c["begin"] << ".." << c["end"];
  }
}

TEST(NpyArray, ReadsNumpysFilesAndWritesTheSameBytes) {
  NpyArray one_d(fixture_path("numpy_int32_1d.npy"));
  EXPECT_EQ(one_d.dtype(), NpyDType::Int32);
  EXPECT_EQ(one_d.shape(), std::vector<int64_t>({5}));
  std::vector<int32_t> want_1d = {3, -1, 2147483647, 0, 5};
  for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(one_d[i], want_1d[static_cast<size_t>(i)]);

  NpyArray two_d(fixture_path("numpy_int64_2d.npy"));
  EXPECT_EQ(two_d.dtype(), NpyDType::Int64);
  EXPECT_EQ(two_d.shape(), std::vector<int64_t>({3, 2}));
  std::vector<int64_t> want_2d = {0, 0, 1, 7, -5, int64_t{1} << 40};
  for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(two_d[i], want_2d[static_cast<size_t>(i)]);

  testing::TemporaryFolder folder;
  write_npy<int32_t>(folder.file("a.npy"), want_1d, {5});
  write_npy<int64_t>(folder.file("b.npy"), want_2d, {3, 2});
  EXPECT_EQ(testing::read_file_bytes(folder.file("a.npy")),
            testing::read_file_bytes(fixture_path("numpy_int32_1d.npy")));
  EXPECT_EQ(testing::read_file_bytes(folder.file("b.npy")),
            testing::read_file_bytes(fixture_path("numpy_int64_2d.npy")));
}

TEST(NpyArray, RefusesATruncatedFile) {
  testing::TemporaryFolder folder;
  std::string bytes = testing::read_file_bytes(fixture_path("numpy_int64_2d.npy"));
  testing::write_file_bytes(folder.file("cut.npy"), bytes.substr(0, bytes.size() - 8));
  EXPECT_THROW(NpyArray(folder.file("cut.npy")), Error);
  testing::write_file_bytes(folder.file("text.npy"), "not an array");
  EXPECT_THROW(NpyArray(folder.file("text.npy")), Error);
}

}  // namespace
}  // namespace tessera
