// Tensor-parallel checkpoint folders: tp = 1 keeps checkpoint.save itself (single-rank
// checkpoints unchanged), tp = n gives each rank tp{r}-of-{n}/; resuming with another tp size
// than the one that saved is refused in one line, whether the directory shows it (shard folders
// of another n, or single-rank files under tp > 1) or only the checkpoint's stored recipe does.
#include "launcher/checkpoint_shards.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "core/check.h"
#include "data/data_test_util.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::TemporaryFolder;

std::string error_of(const std::function<void()>& run) {
  try {
    run();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

void touch(const fs::path& path) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << "x";
}

TEST(CheckpointShards, OneTensorParallelRankKeepsTheDirectoryOthersGetAShardFolder) {
  EXPECT_EQ(tensor_parallel_checkpoint_directory("ckpt", 0, 1), "ckpt");
  EXPECT_EQ(tensor_parallel_checkpoint_directory("ckpt", 0, 2), "ckpt/tp0-of-2");
  EXPECT_EQ(tensor_parallel_checkpoint_directory("ckpt", 3, 4), "ckpt/tp3-of-4");
  EXPECT_EQ(tensor_parallel_checkpoint_directory("", 1, 2), "");  // no checkpoints
  EXPECT_THAT(error_of([] { tensor_parallel_checkpoint_directory("ckpt", 2, 2); }), HasSubstr("tp rank 2 of 2"));
}

TEST(CheckpointShards, ResumeNamesAShardFolderOrIsRefusedForASingleFile) {
  TemporaryFolder folder;
  touch(folder.path() / "iter_0000010.h5");
  EXPECT_EQ(tensor_parallel_resume("auto", 1, 2), "auto");
  EXPECT_EQ(tensor_parallel_resume("none", 1, 2), "none");
  EXPECT_EQ(tensor_parallel_resume(folder.file("iter_0000010.h5"), 0, 1), folder.file("iter_0000010.h5"));
  EXPECT_EQ(tensor_parallel_resume(folder.path().string(), 1, 2), folder.file("tp1-of-2"));
  EXPECT_THAT(error_of([&] { tensor_parallel_resume(folder.file("iter_0000010.h5"), 0, 2); }),
              AllOf(HasSubstr("is a single file"), HasSubstr("parallel.tensor_model_parallel_size = 2"),
                    HasSubstr("give the checkpoint directory")));
}

TEST(CheckpointShards, ADirectoryOfAnotherTensorParallelSizeIsRefused) {
  TemporaryFolder shards, single, empty;
  touch(shards.path() / "tp0-of-2" / "iter_0000010.h5");
  touch(shards.path() / "tp1-of-2" / "iter_0000010.h5");
  touch(single.path() / "iter_0000010.h5");

  EXPECT_NO_THROW(check_checkpoint_directory_tensor_parallel_size(shards.path().string(), 2, "checkpoint.save"));
  EXPECT_NO_THROW(check_checkpoint_directory_tensor_parallel_size(single.path().string(), 1, "checkpoint.save"));
  EXPECT_NO_THROW(check_checkpoint_directory_tensor_parallel_size(empty.path().string(), 4, "checkpoint.save"));
  EXPECT_NO_THROW(check_checkpoint_directory_tensor_parallel_size(empty.file("missing"), 4, "checkpoint.save"));
  EXPECT_THAT(
      error_of([&] { check_checkpoint_directory_tensor_parallel_size(shards.path().string(), 1, "checkpoint.save"); }),
      AllOf(HasSubstr("checkpoint.save: "), HasSubstr("parallel.tensor_model_parallel_size = 2"),
            HasSubstr("this run has 1"), HasSubstr("resume with parallel.tensor_model_parallel_size = 2")));
  EXPECT_THAT(
      error_of([&] { check_checkpoint_directory_tensor_parallel_size(shards.path().string(), 4, "checkpoint.save"); }),
      HasSubstr("this run has 4"));
  EXPECT_THAT(
      error_of([&] { check_checkpoint_directory_tensor_parallel_size(single.path().string(), 2, "checkpoint.save"); }),
      AllOf(HasSubstr("parallel.tensor_model_parallel_size = 1"), HasSubstr("iter_0000010.h5"),
            HasSubstr("this run has 2")));
}

// Pipeline runs: one folder per (tp, pp) rank, tp{r}-pp{s}-of-{tp}x{pp}; any other layout's
// checkpoints in the directory are refused naming both sizes.
TEST(CheckpointShards, PipelineRanksGetAFolderPerPieceAndAnotherLayoutIsRefused) {
  EXPECT_EQ(model_parallel_checkpoint_directory("ckpt", 1, 2, 3, 4), (fs::path("ckpt") / "tp1-pp3-of-2x4").string());
  EXPECT_EQ(model_parallel_checkpoint_directory("ckpt", 0, 1, 1, 2), (fs::path("ckpt") / "tp0-pp1-of-1x2").string());
  EXPECT_EQ(model_parallel_checkpoint_directory("ckpt", 1, 2, 0, 1),
            tensor_parallel_checkpoint_directory("ckpt", 1, 2));
  EXPECT_EQ(model_parallel_resume("auto", 1, 2, 1, 2), "auto");
  TemporaryFolder pieces, tp_shards, single;
  touch(pieces.path() / "tp0-pp0-of-1x2" / "iter_0000010.h5");
  touch(pieces.path() / "tp0-pp1-of-1x2" / "iter_0000010.h5");
  touch(tp_shards.path() / "tp0-of-2" / "iter_0000010.h5");
  touch(single.path() / "iter_0000010.h5");
  EXPECT_EQ(model_parallel_resume(pieces.path().string(), 0, 1, 1, 2), (pieces.path() / "tp0-pp1-of-1x2").string());
  EXPECT_THAT(error_of([&] { model_parallel_resume(single.file("iter_0000010.h5"), 0, 1, 1, 2); }),
              AllOf(HasSubstr("is a single file"), HasSubstr("tp0-pp0-of-1x2/")));
  EXPECT_NO_THROW(check_checkpoint_directory_model_parallel_size(pieces.path().string(), 1, 2, "checkpoint.save"));
  EXPECT_THAT(error_of([&] { check_checkpoint_directory_model_parallel_size(pieces.path().string(), 1, 4, "k"); }),
              AllOf(HasSubstr("k: "), HasSubstr("parallel.pipeline_model_parallel_size = 2"),
                    HasSubstr("this run has 1 and 4")));
  EXPECT_THAT(error_of([&] { check_checkpoint_directory_model_parallel_size(pieces.path().string(), 1, 1, "k"); }),
              HasSubstr("this run has 1 and 1"));
  EXPECT_THAT(error_of([&] { check_checkpoint_directory_model_parallel_size(tp_shards.path().string(), 2, 2, "k"); }),
              AllOf(HasSubstr("parallel.pipeline_model_parallel_size = 1 (tp0-of-2/)"), HasSubstr("this run has 2")));
  EXPECT_THAT(error_of([&] { check_checkpoint_directory_model_parallel_size(single.path().string(), 1, 2, "k"); }),
              AllOf(HasSubstr("single-rank run"), HasSubstr("iter_0000010.h5")));
  EXPECT_NO_THROW(check_checkpoint_directory_model_parallel_size(tp_shards.path().string(), 2, 1, "k"));
}

TEST(CheckpointShards, TheCheckpointsStoredRecipeDecides) {
  TrainingCheckpoint checkpoint;
  checkpoint.config_yaml = "model:\n  preset: llama-tiny\nparallel:\n  tensor_model_parallel_size: 2\n";
  EXPECT_NO_THROW(check_checkpoint_tensor_parallel_size(checkpoint, "a.h5", 2));
  EXPECT_THAT(error_of([&] { check_checkpoint_tensor_parallel_size(checkpoint, "a.h5", 1); }),
              AllOf(HasSubstr("a.h5: the checkpoint was saved with parallel.tensor_model_parallel_size = 2"),
                    HasSubstr("this run has 1")));
  // A recipe without the key (checkpoints from before tensor parallelism) means tp = 1.
  checkpoint.config_yaml = "model:\n  preset: llama-tiny\n";
  EXPECT_NO_THROW(check_checkpoint_tensor_parallel_size(checkpoint, "a.h5", 1));
  EXPECT_THAT(error_of([&] { check_checkpoint_tensor_parallel_size(checkpoint, "a.h5", 2); }),
              HasSubstr("saved with parallel.tensor_model_parallel_size = 1"));
}

TEST(CheckpointShards, ZeroStage3ShardsAndZero1Or2ShardsDoNotMix) {
  TrainingCheckpoint checkpoint;
  checkpoint.config_yaml = "parallel:\n  zero_stage: 3\n";
  EXPECT_NO_THROW(check_checkpoint_zero_stage(checkpoint, "a.h5", 3));
  EXPECT_THAT(error_of([&] { check_checkpoint_zero_stage(checkpoint, "a.h5", 1); }),
              AllOf(HasSubstr("a.h5: the checkpoint holds the optimizer shards of a run with parallel.zero_stage = 3 "
                              "but this run has 1"),
                    HasSubstr("resume with parallel.zero_stage = 3")));
  // parallel.fsdp is zero_stage 3's other name; ZeRO-1 and ZeRO-2 share their bucket pieces.
  checkpoint.config_yaml = "parallel:\n  zero_stage: 0\n  fsdp: true\n";
  EXPECT_NO_THROW(check_checkpoint_zero_stage(checkpoint, "a.h5", 3));
  checkpoint.config_yaml = "parallel:\n  zero_stage: 2\n  fsdp: false\n";
  EXPECT_NO_THROW(check_checkpoint_zero_stage(checkpoint, "a.h5", 1));
  EXPECT_THAT(error_of([&] { check_checkpoint_zero_stage(checkpoint, "a.h5", 3); }),
              HasSubstr("parallel.zero_stage = 2 but this run has 3"));
}

}  // namespace
}  // namespace tessera
