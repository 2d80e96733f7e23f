// `tessera dpo` and `tessera reward-model` data-parallel over every rank (np 2 and 4): the same
// global batch of 8 pairs split over the ranks gives, step by step, the training loss, accuracy
// and margin of the single-process run every rank also performs (gradient accumulation over the
// whole batch), within 1e-5 in f32, and so does the held-out evaluation after the last step.
// Each rank writes its own copy of the pairs and the starting checkpoint (identical bytes).
#include <gtest/gtest.h>
#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "launcher/dpo_test_util.h"
#include "launcher/dpo_trainer.h"
#include "launcher/reward_model_trainer.h"
#include "parallel/mpi_communicator.h"

namespace tessera {
namespace {

constexpr double kTolerance = 1e-5;

LaunchContext world_launch() {
  LaunchContext launch;
  MPI_Comm_rank(MPI_COMM_WORLD, &launch.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &launch.world_size);
  launch.local_rank = launch.rank;
  launch.local_size = launch.world_size;
  return launch;
}

void expect_same(const std::vector<PreferenceMetrics>& single, const std::vector<PreferenceMetrics>& parallel,
                 const char* what) {
  ASSERT_EQ(single.size(), parallel.size()) << what;
  for (size_t i = 0; i < single.size(); ++i) {
    EXPECT_NEAR(parallel[i].loss, single[i].loss, kTolerance * std::max(1.0, std::abs(single[i].loss)))
        << what << " " << i;
    EXPECT_NEAR(parallel[i].margin, single[i].margin, kTolerance * std::max(1.0, std::abs(single[i].margin)))
        << what << " " << i;
    EXPECT_EQ(parallel[i].accuracy, single[i].accuracy) << what << " " << i;
  }
}

class PreferenceDataParallel : public ::testing::TestWithParam<PreferenceMethod> {};

TEST_P(PreferenceDataParallel, MatchesTheSingleProcessRun) {
  const PreferenceMethod method = GetParam();
  testing::TemporaryFolder folder;
  const std::vector<testing::ArithmeticPair> pairs = testing::arithmetic_pairs(6, 9);
  testing::write_pairs(folder.file("train.jsonl"), {pairs.begin(), pairs.begin() + 28});
  testing::write_pairs(folder.file("valid.jsonl"), {pairs.begin() + 28, pairs.end()});
  const std::string section = preference_section(method);
  std::string recipe =
      testing::preference_recipe(section, folder.file("train.jsonl"), folder.file("valid.jsonl"), folder.file("run"));
  const std::vector<std::string> overrides = {"train.micro_batch_size=2", "train.train_iters=2",
                                              "scheduler.lr_warmup_iters=1"};
  if (method == PreferenceMethod::kDpo) {
    const TrainConfig base =
        preference_config_from_recipe(method, recipe + "  init_from: " + folder.file("train.jsonl") + "\n", "r.yaml",
                                      overrides)
            .train;
    // The reference differs from the policy, so the first step's loss is not log 2 on every rank.
    testing::save_seeded_model(base, 31, folder.file("policy"));
    testing::save_seeded_model(base, 32, folder.file("reference"));
    recipe += "  init_from: " + folder.file("policy") + "\n  reference_from: " + folder.file("reference") + "\n";
  }
  const PreferenceRunConfig single = preference_config_from_recipe(method, recipe, "r.yaml", overrides);
  const PreferenceRunConfig parallel =
      preference_config_from_recipe(method, recipe, "r.yaml", overrides, world_launch());
  ASSERT_EQ(parallel.train.layout.dp, world_launch().world_size);

  auto run = [&](const PreferenceRunConfig& config, Communicator* dp) {
    std::unique_ptr<PreferenceTrainer> trainer;
    if (method == PreferenceMethod::kDpo) {
      trainer = std::make_unique<DpoTrainer>(
          config, [](const std::string&) {}, dp);
    } else {
      trainer = std::make_unique<RewardModelTrainer>(
          config, [](const std::string&) {}, dp);
    }
    return trainer->run();
  };
  const PreferenceResult one = run(single, nullptr);
  MpiCommunicator world(MPI_COMM_WORLD, "dp");
  const PreferenceResult many = run(parallel, &world);
  expect_same(one.steps, many.steps, "step");
  expect_same(one.evaluations, many.evaluations, "evaluation");
  EXPECT_GT(std::abs(one.steps[0].loss - std::log(2.0)), 1e-4) << "a trivial first loss would hide errors";
}

INSTANTIATE_TEST_SUITE_P(Methods, PreferenceDataParallel,
                         ::testing::Values(PreferenceMethod::kDpo, PreferenceMethod::kRewardModel),
                         [](const auto& info) { return std::string(preference_section(info.param)); });

}  // namespace
}  // namespace tessera
