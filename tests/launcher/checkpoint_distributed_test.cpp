// Distributed checkpoint folders without a trainer: pieces written by "ranks" (boxes of a tensor
// split along either dim, cut further into flat ranges as ZeRO slices are) read back as any box
// and flat range, compared element by element with the tensor they were cut from; vocab-padded
// tensors read into more rows; missing coverage, uncommitted folders, keep_last, and assembling
// the single-rank model for generate/export (load_checkpoint_argument).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "data/data_test_util.h"
#include "launcher/checkpoint_argument.h"
#include "launcher/distributed_checkpoint.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::TemporaryFolder;

constexpr int64_t kRows = 6, kCols = 10;

// The global tensor: element (r, c) = 100 r + c + 0.5, so a misplaced element is visible.
float global_value(int64_t r, int64_t c) { return float(100 * r + c) + 0.5f; }

// The values of `box` (2-D, row-major), elements [begin, end).
Tensor box_values(const TensorBox& box, int64_t begin, int64_t end) {
  std::vector<float> all;
  for (int64_t r = 0; r < box.extent[0]; ++r)
    for (int64_t c = 0; c < box.extent[1]; ++c) all.push_back(global_value(box.offsets[0] + r, box.offsets[1] + c));
  return Tensor::from_vector(std::vector<float>(all.begin() + begin, all.begin() + end), {end - begin});
}

RankPiece piece(const std::string& tensor, const TensorBox& box, int64_t begin, int64_t end,
                bool vocab_padded = false) {
  return {tensor, DType::BF16, {kRows, kCols}, vocab_padded, box, begin, end, box_values(box, begin, end)};
}

CheckpointMetadata metadata_of(int64_t step, int world_size) {
  CheckpointMetadata m;
  m.step = step;
  m.consumed_samples = 8 * step;
  m.layout.world_size = world_size;
  m.layout.tp = world_size;
  m.config_yaml = "model:\n  preset: llama-tiny\n";
  return m;
}

// "model/w" split over 2 ranks along columns (boxes [6, 4] and [6, 6]); rank 1's box written as
// two flat slices, as two ZeRO ranks would. Written into directory/iter_<step> and committed.
std::string write_split_checkpoint(const std::string& directory, int64_t step, bool commit = true) {
  const std::string folder = prepare_checkpoint_folder(directory, step);
  const TensorBox left{{0, 0}, {kRows, 4}}, right{{0, 4}, {kRows, 6}};
  RankCheckpoint rank0{0, 2, {piece("model/w", left, 0, 24)}, {}};
  RankCheckpoint rank1{1, 2, {piece("model/w", right, 0, 17), piece("model/w", right, 17, 36)}, {}};
  write_rank_file(folder, rank0);
  write_rank_file(folder, rank1);
  if (commit) commit_checkpoint(folder, metadata_of(step, 2));
  return folder;
}

TEST(DistributedCheckpoint, AnyBoxAndFlatRangeReadsBackTheElementsItWasCutFrom) {
  TemporaryFolder folder;
  CheckpointReader reader(write_split_checkpoint(folder.path().string(), 3));
  EXPECT_EQ(reader.metadata().step, 3);
  EXPECT_EQ(reader.tensor("model/w").pieces.size(), 3u);
  EXPECT_EQ(reader.tensor("model/w").dtype, DType::BF16);
  std::mt19937 engine(5);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t r0 = engine() % kRows, c0 = engine() % kCols;
    const TensorBox box{{r0, c0}, {1 + int64_t(engine() % (kRows - r0)), 1 + int64_t(engine() % (kCols - c0))}};
    const int64_t n = box.extent[0] * box.extent[1];
    const int64_t begin = engine() % n, end = begin + 1 + int64_t(engine() % (n - begin));
    std::vector<float> got(size_t(end - begin), -1.0f);
    reader.read("model/w", {kRows, kCols}, box, begin, end, got.data());
    EXPECT_EQ(got, box_values(box, begin, end).to_vector<float>()) << "trial " << trial;
  }
}

TEST(DistributedCheckpoint, VocabPaddedTensorsReadIntoMoreRowsKeepingTheRest) {
  TemporaryFolder folder;
  const std::string checkpoint = prepare_checkpoint_folder(folder.path().string(), 1);
  write_rank_file(checkpoint, {0, 1, {piece("model/table", {{0, 0}, {kRows, kCols}}, 0, kRows * kCols, true)}, {}});
  commit_checkpoint(checkpoint, metadata_of(1, 1));
  CheckpointReader reader(checkpoint);
  // Rows 4..7 of a table padded to 8 rows: rows 6 and 7 are not in the checkpoint and keep -1.
  std::vector<float> got(size_t(4 * kCols), -1.0f);
  reader.read("model/table", {8, kCols}, {{4, 0}, {4, kCols}}, 0, 4 * kCols, got.data());
  std::vector<float> expected = box_values({{4, 0}, {2, kCols}}, 0, 2 * kCols).to_vector<float>();
  expected.resize(size_t(4 * kCols), -1.0f);
  EXPECT_EQ(got, expected);
  std::string message;
  try {
    reader.read("model/table", {8, kCols + 1}, {{0, 0}, {1, 1}}, 0, 1, got.data());
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_THAT(message, HasSubstr("tensor model/table has shape [6, 10] in the checkpoint but [8, 11] in this model"));
}

TEST(DistributedCheckpoint, PiecesThatDoNotCoverTheRequestFailNamingTheTensor) {
  TemporaryFolder folder;
  const std::string checkpoint = prepare_checkpoint_folder(folder.path().string(), 1);
  write_rank_file(checkpoint, {0, 1, {piece("model/w", {{0, 0}, {kRows, kCols}}, 0, 30)}, {}});  // half
  commit_checkpoint(checkpoint, metadata_of(1, 1));
  CheckpointReader reader(checkpoint);
  std::vector<float> got(size_t(kRows * kCols));
  std::string message;
  try {
    reader.read("model/w", {kRows, kCols}, {{0, 0}, {kRows, kCols}}, 0, kRows * kCols, got.data());
  } catch (const Error& e) {
    message = e.what();
  }
  EXPECT_THAT(message, HasSubstr("the pieces of tensor model/w cover 30 of the 60 elements this rank needs"));
  EXPECT_THAT([&] { (void)reader.tensor("model/other"); }, ::testing::Throws<Error>());
}

TEST(DistributedCheckpoint, ResumePicksTheNewestCommittedFolderAndKeepLastRemovesTheRest) {
  TemporaryFolder folder;
  const std::string dir = folder.path().string();
  for (int64_t step : {2, 4, 6}) write_split_checkpoint(dir, step);
  write_split_checkpoint(dir, 8, /*commit=*/false);  // a save that never finished
  std::vector<std::string> warnings;
  auto warn = [&](const std::string& w) { warnings.push_back(w); };
  EXPECT_EQ(find_resume_checkpoint("auto", dir, warn), dir + "/iter_0000006");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("iter_0000008 has no COMMIT marker"));
  EXPECT_EQ(find_resume_checkpoint("none", dir, warn), std::nullopt);
  EXPECT_EQ(find_resume_checkpoint(dir + "/iter_0000004", "", warn), dir + "/iter_0000004");
  EXPECT_THROW(find_resume_checkpoint(dir + "/iter_0000008", "", warn), Error);
  EXPECT_THROW(CheckpointReader(dir + "/iter_0000008"), Error);

  // keep_last 2: step 2 goes; the uncommitted step 8 is newer than every commit and stays.
  EXPECT_EQ(remove_old_checkpoints(dir, 2), std::vector<std::string>{dir + "/iter_0000002"});
  std::vector<CheckpointEntry> left = list_checkpoint_folders(dir);
  ASSERT_EQ(left.size(), 3u);
  EXPECT_EQ(left[0].step, 4);
  EXPECT_EQ(left[2].step, 8);
  EXPECT_FALSE(left[2].committed);
  // A newer commit makes the interrupted save debris: removed with the oldest commit.
  write_split_checkpoint(dir, 10);
  EXPECT_EQ(remove_old_checkpoints(dir, 2), (std::vector<std::string>{dir + "/iter_0000004", dir + "/iter_0000008"}));
}

TEST(DistributedCheckpoint, GenerateAndExportReadTheAssembledSingleRankModel) {
  TemporaryFolder folder;
  write_split_checkpoint(folder.path().string(), 5);
  LoadedCheckpoint loaded = load_checkpoint_argument(folder.path().string(), "export");
  EXPECT_EQ(loaded.path, folder.path().string() + "/iter_0000005");
  EXPECT_EQ(loaded.checkpoint.step, 5);
  EXPECT_EQ(loaded.checkpoint.config_yaml, "model:\n  preset: llama-tiny\n");
  ASSERT_EQ(loaded.checkpoint.model.size(), 1u);
  const SavedParameter& w = loaded.checkpoint.model.at("w");
  EXPECT_EQ(w.dtype, DType::BF16);
  EXPECT_EQ(w.value.shape(), (Shape{kRows, kCols}));
  EXPECT_EQ(w.value.to_vector<float>(), box_values({{0, 0}, {kRows, kCols}}, 0, kRows * kCols).to_vector<float>());
}

}  // namespace
}  // namespace tessera
