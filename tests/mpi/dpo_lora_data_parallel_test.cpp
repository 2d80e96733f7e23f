// `tessera dpo` with LoRA data-parallel over every rank (np 2 and 4): the policy is dpo.init_from's
// model frozen plus adapters, the reference that model with the adapters off. The same global batch
// split over the ranks gives, step by step, the loss and margin of the single-process run every
// rank also performs (within 1e-5), the ranks end with equal adapters (only those are optimized and
// all-reduced), and every rank's base is bitwise dpo.init_from's.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <string>
#include <vector>

#include "launcher/checkpoint_argument.h"
#include "launcher/dpo_test_util.h"
#include "launcher/dpo_trainer.h"
#include "parallel/mpi_communicator.h"

namespace tessera {
namespace {

LaunchContext world_launch() {
  LaunchContext launch;
  MPI_Comm_rank(MPI_COMM_WORLD, &launch.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &launch.world_size);
  launch.local_rank = launch.rank;
  launch.local_size = launch.world_size;
  return launch;
}

TEST(DpoLoraDataParallel, MatchesTheSingleProcessRunAndTrainsOnlyTheAdapters) {
  testing::TemporaryFolder folder;
  const std::vector<testing::ArithmeticPair> pairs = testing::arithmetic_pairs(6, 9);
  testing::write_pairs(folder.file("train.jsonl"), {pairs.begin(), pairs.begin() + 28});
  testing::write_pairs(folder.file("valid.jsonl"), {pairs.begin() + 28, pairs.end()});
  std::string recipe =
      testing::preference_recipe("dpo", folder.file("train.jsonl"), folder.file("valid.jsonl"), folder.file("run"));
  const std::vector<std::string> overrides = {"train.micro_batch_size=2", "train.train_iters=2",
                                              "scheduler.lr_warmup_iters=1", "optimizer.lr=1.0e-2"};
  const TrainConfig plain = preference_config_from_recipe(PreferenceMethod::kDpo,
                                                          recipe + "  init_from: " + folder.file("train.jsonl") + "\n",
                                                          "r.yaml", overrides)
                                .train;
  testing::save_seeded_model(plain, 31, folder.file("base"));
  recipe += "  init_from: " + folder.file("base") + "\nlora:\n  rank: 4\n  alpha: 8\n";
  const PreferenceRunConfig single = preference_config_from_recipe(PreferenceMethod::kDpo, recipe, "r.yaml", overrides);
  const PreferenceRunConfig parallel =
      preference_config_from_recipe(PreferenceMethod::kDpo, recipe, "r.yaml", overrides, world_launch());

  DpoTrainer one(single, [](const std::string&) {});
  const PreferenceResult a = one.run();
  MpiCommunicator world(MPI_COMM_WORLD, "dp");
  DpoTrainer many(parallel, [](const std::string&) {}, &world);
  const PreferenceResult b = many.run();
  ASSERT_EQ(a.steps.size(), b.steps.size());
  for (size_t i = 0; i < a.steps.size(); ++i) {
    EXPECT_NEAR(b.steps[i].loss, a.steps[i].loss, 1e-5) << i;
    EXPECT_NEAR(b.steps[i].margin, a.steps[i].margin, 1e-5) << i;
  }
  EXPECT_GT(std::abs(a.steps.back().loss - std::log(2.0)), 1e-4) << "the adapters did not move the policy";

  const LoadedCheckpoint start = load_checkpoint_argument(folder.file("base"), "test");
  for (const auto& [name, value] : many.policy().named_parameters()) {
    std::vector<float> mine = value.to_vector<float>();
    if (name.find(".adapter.") == std::string::npos) {
      EXPECT_EQ(mine, start.checkpoint.model.at(name).value.to_vector<float>()) << name;
      continue;
    }
    std::vector<float> first = mine;  // rank 0's adapter, equal on every rank
    MPI_Bcast(first.data(), int(first.size()), MPI_FLOAT, 0, MPI_COMM_WORLD);
    EXPECT_EQ(mine, first) << name;
  }
}

}  // namespace
}  // namespace tessera
