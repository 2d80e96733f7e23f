// Distributed checkpoints load into any layout (the acceptance test), with the real
// `tessera train` under mpirun on CPU ranks, f32, a 4-layer llama-tiny with 4 key/value groups.
//   1. tp 2 x pp 2 x dp 2 with ZeRO-1 (8 ranks) trains 3 steps and saves iter_0000003/: 8 rank
//      files, metadata.json and COMMIT.
//   2. The same layout resumes it for steps 4..8: the reference losses.
//   3. Each other layout (tp 4 x dp 2; pp 4 x dp 2; dp 2 with ZeRO-2 on 2 ranks; one process)
//      loads iter_0000003 and re-saves it in its own layout: gathered from its pieces, every
//      parameter and optimizer tensor equals the original checkpoint's bit for bit (so the load
//      put every element where it belongs and the save wrote it back). Then it resumes its own
//      checkpoint for steps 4..8: losses within 1e-5 relative of the reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "data/data_test_util.h"
#include "launcher/distributed_checkpoint.h"
#include "train_mpi_support.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using namespace train_mpi;
using testing::TemporaryFolder;

std::string recipe_text(const std::string& data_prefix) {
  return "model:\n  preset: llama-tiny\n  num_layers: 4\n  num_query_groups: 4\n"
         "data:\n  data_path: [" +
         data_prefix +
         "]\n  split: \"100,0,0\"\n  seq_length: 16\n  num_workers: 1\n"
         "optimizer:\n  lr: 1.0e-3\n  min_lr: 1.0e-4\n  weight_decay: 0.1\n  clip_grad: 1.0\n"
         "scheduler:\n  lr_warmup_iters: 2\n"
         "train:\n  micro_batch_size: 1\n  global_batch_size: 8\n  train_iters: 8\n  eval_interval: 100\n"
         "  eval_iters: 0\n  precision: fp32\n  device: cpu\n"
         "logging:\n  log_interval: 1\n";
}

// Every tensor of two checkpoints, gathered from their pieces, equal bit for bit.
void expect_same_tensors(const std::string& got_folder, const std::string& expected_folder) {
  CheckpointReader got(got_folder), expected(expected_folder);
  ASSERT_EQ(got.metadata().tensors.size(), expected.metadata().tensors.size());
  int64_t elements = 0;
  for (const auto& [name, tensor] : expected.metadata().tensors) {
    ASSERT_TRUE(got.has(name)) << name;
    Tensor a = got.read_full(name), b = expected.read_full(name);
    ASSERT_EQ(a.shape(), b.shape()) << name;
    EXPECT_EQ(std::memcmp(a.data<float>(), b.data<float>(), size_t(a.numel()) * sizeof(float)), 0) << name;
    elements += a.numel();
  }
  EXPECT_EQ(got.metadata().step, 3);
  EXPECT_EQ(got.metadata().consumed_samples, expected.metadata().consumed_samples);
  EXPECT_EQ(got.metadata().optimizer_steps_taken, expected.metadata().optimizer_steps_taken);
  std::printf("  %s: %zu tensors, %lld elements equal bit for bit\n", got_folder.c_str(),
              expected.metadata().tensors.size(), static_cast<long long>(elements));
}

struct Layout {
  std::string name;
  int ranks;
  std::vector<std::string> overrides;
};

TEST(CheckpointReshard, EightRankZero1CheckpointLoadsIntoOtherLayoutsExactly) {
  TemporaryFolder folder;
  const std::string dir = folder.path().string();
  write_random_corpus(folder.file("corpus"));
  const std::string recipe = folder.file("recipe.yaml");
  std::ofstream(recipe) << recipe_text(folder.file("corpus"));
  const std::vector<std::string> original = {"parallel.tensor_model_parallel_size=2",
                                             "parallel.pipeline_model_parallel_size=2", "parallel.zero_stage=1"};
  const std::string saved = folder.file("saved");

  std::vector<std::string> first = original;
  for (std::string o : {std::string("train.exit_interval=3"), "checkpoint.save=" + saved, "logging.run_dir=" + folder.file("run0")})
    first.push_back(o);
  Outcome job = run(mpirun(8) + train_command(recipe, first), dir, "first");
  ASSERT_EQ(job.status, 0) << job.err;
  const std::string checkpoint = saved + "/iter_0000003";
  for (int rank = 0; rank < 8; ++rank)
    EXPECT_TRUE(fs::exists(fs::path(checkpoint) / rank_file_name(rank, 8))) << rank;
  ASSERT_TRUE(fs::exists(fs::path(checkpoint) / "COMMIT"));
  EXPECT_EQ(CheckpointReader(checkpoint).metadata().layout.describe(), "tp 2 x pp 2 x dp 2, ZeRO-1, 8 rank(s)");

  std::vector<std::string> second = original;
  for (std::string o : {"checkpoint.save=" + saved, "logging.run_dir=" + folder.file("run_original")})
    second.push_back(o);
  job = run(mpirun(8) + train_command(recipe, second), dir, "original");
  ASSERT_EQ(job.status, 0) << job.err;
  const std::map<int64_t, double> reference = read_losses(folder.file("run_original"));
  ASSERT_EQ(reference.size(), 5u);
  ASSERT_EQ(reference.begin()->first, 4);

  const std::vector<Layout> layouts = {
      {"tp4_dp2", 8, {"parallel.tensor_model_parallel_size=4"}},
      {"pp4_dp2", 8, {"parallel.pipeline_model_parallel_size=4"}},
      {"dp2_zero2", 2, {"parallel.zero_stage=2"}},
      {"one", 1, {}},
  };
  for (const Layout& layout : layouts) {
    SCOPED_TRACE(layout.name);
    const std::string resaved = folder.file(layout.name + "_checkpoints");
    std::vector<std::string> convert = layout.overrides;
    for (std::string o : {"train.resume=" + checkpoint, std::string("train.train_iters=3"), "checkpoint.save=" + resaved,
                          "logging.run_dir=" + folder.file(layout.name + "_convert")})
      convert.push_back(o);
    job = run(mpirun(layout.ranks) + train_command(recipe, convert), dir, layout.name + "_convert");
    ASSERT_EQ(job.status, 0) << job.err;
    expect_same_tensors(resaved + "/iter_0000003", checkpoint);

    std::vector<std::string> resume = layout.overrides;
    for (std::string o : {"checkpoint.save=" + resaved, "logging.run_dir=" + folder.file(layout.name + "_resumed")})
      resume.push_back(o);
    job = run(mpirun(layout.ranks) + train_command(recipe, resume), dir, layout.name + "_resumed");
    ASSERT_EQ(job.status, 0) << job.err;
    EXPECT_NE(job.out.find("resumed from " + resaved + "/iter_0000003"), std::string::npos) << job.out;
    const std::map<int64_t, double> losses = read_losses(folder.file(layout.name + "_resumed"));
    ASSERT_EQ(losses.size(), reference.size());
    for (const auto& [step, expected] : reference) {
      ASSERT_TRUE(std::isfinite(losses.at(step)));
      EXPECT_LE(std::abs(losses.at(step) - expected), 1e-5 * std::abs(expected))
          << "step " << step << ": " << losses.at(step) << " vs " << expected;
    }
  }
}

}  // namespace
}  // namespace tessera
