// Resume equals uninterrupted: a tiny Llama with dropout trains 20 steps without stopping;
// separately a run stops after step 10 (saving there) and a new Trainer resumes from that
// checkpoint for steps 11..20. On CPU the resumed steps must give bitwise the losses, learning
// rates, gradient norms and validation losses of the uninterrupted run. Negative controls: the
// same resume with the dropout stream or the loader position not restored gives other losses,
// so the comparison does see those pieces of state. keep_last keeps the newest committed
// checkpoints; a save written on the background thread (checkpoint.async_save) while training
// goes on equals, bit for bit, the same save written synchronously.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "data/data_test_util.h"
#include "data/indexed_dataset_writer.h"
#include "launcher/distributed_checkpoint.h"
#include "launcher/recipe.h"
#include "launcher/trainer.h"

namespace tessera {
namespace {

using testing::TemporaryFolder;

// 300 documents of 8..40 random token ids below llama-tiny's vocabulary of 512.
void write_tiny_corpus(const std::string& prefix) {
  IndexedDatasetWriter writer(prefix, IndexedDType::UInt16);
  std::mt19937 engine(42);
  for (int document = 0; document < 300; ++document) {
    std::vector<int32_t> tokens(8 + engine() % 33);
    for (int32_t& token : tokens) token = static_cast<int32_t>(engine() % 512);
    writer.add_document(tokens);
  }
  writer.finalize();
}

std::string tiny_recipe(const std::string& data_prefix, const std::string& run_dir) {
  return "model:\n  preset: llama-tiny\n  hidden_dropout: 0.1\n"
         "data:\n  data_path: [" +
         data_prefix +
         "]\n  split: \"90,10,0\"\n  seq_length: 16\n"
         "optimizer:\n  lr: 3.0e-3\n  min_lr: 3.0e-4\n  weight_decay: 0.1\n  clip_grad: 1.0\n"
         "scheduler:\n  lr_warmup_iters: 3\n"
         "train:\n  micro_batch_size: 2\n  global_batch_size: 4\n  train_iters: 20\n  eval_interval: 5\n"
         "  eval_iters: 1\n  precision: fp32\n  device: cpu\n"
         "checkpoint:\n  save_interval: 10\n  keep_last: 2\n"
         "logging:\n  log_interval: 5\n  run_dir: " +
         run_dir + "\n";
}

class TrainResume : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    folder_ = new TemporaryFolder();
    write_tiny_corpus(folder_->file("corpus"));
    uninterrupted_ = new TrainResult(train({"train.resume=none"}));
    interrupted_ = new TrainResult(train({"train.resume=none", "checkpoint.save=" + checkpoint_dir()}, 10));
  }
  static void TearDownTestSuite() {
    delete interrupted_;
    delete uninterrupted_;
    delete folder_;
  }

  static std::string checkpoint_dir() { return folder_->file("checkpoints"); }
  static std::string checkpoint_at_10() { return checkpoint_dir() + "/iter_0000010"; }

  static TrainResult train(const std::vector<std::string>& overrides, std::optional<int64_t> stop_after = {}) {
    Recipe recipe =
        Recipe::parse(tiny_recipe(folder_->file("corpus"), folder_->file("runs")), "resume_test.yaml", overrides);
    Trainer trainer(train_config_from_recipe(recipe), [](const std::string& line) {
      if (line.find("checkpoint") != std::string::npos) std::printf("  %s\n", line.c_str());
    });
    return trainer.run(stop_after);
  }

  // Resumes from the checkpoint at step 10 after `edit` changed it; returns step 11's loss.
  static double loss_at_11_resuming_from_edited(const std::function<void(nlohmann::json&)>& edit) {
    namespace fs = std::filesystem;
    std::string path = folder_->file("edited") + "/iter_0000010";
    fs::remove_all(folder_->file("edited"));
    fs::create_directories(path);
    fs::copy(checkpoint_at_10(), path);
    nlohmann::json metadata = nlohmann::json::parse(std::ifstream(path + "/metadata.json"));
    edit(metadata);
    std::ofstream(path + "/metadata.json") << metadata.dump();
    TrainResult resumed = train({"train.resume=" + path}, 11);
    EXPECT_EQ(resumed.resumed_from, path);
    return resumed.steps.at(0).loss;
  }

  static TemporaryFolder* folder_;
  static TrainResult* uninterrupted_;
  static TrainResult* interrupted_;
};

TemporaryFolder* TrainResume::folder_ = nullptr;
TrainResult* TrainResume::uninterrupted_ = nullptr;
TrainResult* TrainResume::interrupted_ = nullptr;

TEST_F(TrainResume, StepsAfterTheCheckpointMatchTheUninterruptedRunBitForBit) {
  ASSERT_EQ(uninterrupted_->steps.size(), 20u);
  ASSERT_EQ(interrupted_->steps.size(), 10u);
  EXPECT_EQ(interrupted_->saved_checkpoints, std::vector<std::string>{checkpoint_at_10()});
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(interrupted_->steps[i].loss, uninterrupted_->steps[i].loss) << i + 1;

  TrainResult resumed = train({"train.resume=auto", "checkpoint.save=" + checkpoint_dir()});
  EXPECT_EQ(resumed.resumed_from, checkpoint_at_10());
  ASSERT_EQ(resumed.steps.size(), 10u);
  for (size_t i = 0; i < 10; ++i) {
    const StepMetrics& expected = uninterrupted_->steps[10 + i];
    const StepMetrics& got = resumed.steps[i];
    ASSERT_EQ(got.step, expected.step);
    EXPECT_EQ(got.loss, expected.loss) << "step " << got.step;  // exact: bitwise equal doubles
    EXPECT_EQ(got.lr, expected.lr) << "step " << got.step;
    EXPECT_EQ(got.grad_norm, expected.grad_norm) << "step " << got.step;
  }
  // Validation at steps 15 and 20 sees the same weights.
  std::vector<std::pair<int64_t, double>> expected_validation(uninterrupted_->validation_losses.begin() + 2,
                                                              uninterrupted_->validation_losses.end());
  EXPECT_EQ(resumed.validation_losses, expected_validation);
  EXPECT_EQ(resumed.saved_checkpoints, std::vector<std::string>{checkpoint_dir() + "/iter_0000020"});
  std::printf("  losses 11..20: %.6f ... %.6f, bitwise equal to the uninterrupted run\n", resumed.steps.front().loss,
              resumed.steps.back().loss);
}

TEST_F(TrainResume, WithoutTheDropoutStreamOrTheLoaderPositionTheLossesDiffer) {
  double expected = uninterrupted_->steps.at(10).loss;
  // The control's control: an unedited round trip through the same code path matches.
  EXPECT_EQ(loss_at_11_resuming_from_edited([](nlohmann::json&) {}), expected);
  double fresh_dropout =
      loss_at_11_resuming_from_edited([](nlohmann::json& m) { m["rng"][0]["dropout"][1] = 0; });
  double first_batches = loss_at_11_resuming_from_edited([](nlohmann::json& m) { m["consumed_samples"] = 0; });
  EXPECT_NE(fresh_dropout, expected);
  EXPECT_NE(first_batches, expected);
  std::printf("  step 11 loss: %.9f exact, %.9f with a fresh dropout stream, %.9f reading from sample 0\n", expected,
              fresh_dropout, first_batches);
}

TEST_F(TrainResume, ExitIntervalSplitsARunIntoJobsThatResumeExactly) {
  std::string dir = folder_->file("jobs");
  std::vector<std::string> job = {"checkpoint.save=" + dir, "train.exit_interval=7", "train.resume=auto"};
  TrainResult first = train(job), second = train(job), third = train(job);
  ASSERT_EQ(first.steps.size(), 7u);
  ASSERT_EQ(second.steps.size(), 7u);
  ASSERT_EQ(third.steps.size(), 6u);  // 20 steps in jobs of 7
  EXPECT_EQ(third.steps.back().step, 20);
  EXPECT_EQ(third.steps.back().loss, uninterrupted_->steps.back().loss);
  EXPECT_EQ(second.steps.front().loss, uninterrupted_->steps.at(7).loss);
  // Saves at 7, 14 and 20; keep_last 2 removed step 7's.
  std::vector<CheckpointEntry> kept = list_checkpoint_folders(dir);
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].step, 14);
  EXPECT_EQ(kept[1].step, 20);
  EXPECT_TRUE(kept[0].committed && kept[1].committed);
}

TEST_F(TrainResume, ResumingIntoAnotherModelShapeNamesTheFirstMismatchingTensor) {
  try {
    train({"train.resume=" + checkpoint_at_10(), "model.num_layers=3"}, 11);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the checkpoint has no tensor model/decoder.layers.2.input_layernorm.weight"),
              std::string::npos)
        << e.what();
  }
}

// The save of step 5 is written by the background thread while steps 6..10 train: it must hold
// step 5's state, as the synchronous save of the same run does.
TEST_F(TrainResume, AnAsynchronousSaveEqualsASynchronousOneBitForBit) {
  const std::string async_dir = folder_->file("async"), sync_dir = folder_->file("sync");
  train({"train.resume=none", "checkpoint.save_interval=5", "checkpoint.save=" + async_dir}, 10);
  train({"train.resume=none", "checkpoint.save_interval=5", "checkpoint.async_save=false", "checkpoint.save=" + sync_dir},
        10);
  CheckpointReader got(async_dir + "/iter_0000005"), expected(sync_dir + "/iter_0000005");
  ASSERT_EQ(got.metadata().tensors.size(), expected.metadata().tensors.size());
  for (const auto& [name, tensor] : expected.metadata().tensors)
    EXPECT_EQ(got.read_full(name).to_vector<float>(), expected.read_full(name).to_vector<float>()) << name;
  EXPECT_EQ(got.metadata().consumed_samples, 20);
  EXPECT_NE(got.read_full("model/output_layer.weight").to_vector<float>(),
            CheckpointReader(async_dir + "/iter_0000010").read_full("model/output_layer.weight").to_vector<float>())
      << "training went on after step 5";
}

}  // namespace
}  // namespace tessera
