// `tessera reward-model`'s trainer (launcher/reward_model_trainer.h) on arithmetic preference
// pairs.
//  - The first step's Bradley-Terry loss equals posttrain's bradley_terry_loss on rewards computed
//    here independently: each side rendered alone (unpadded), one forward of a RewardModel built
//    from the same checkpoint and seed, the head read at the row's last token.
//  - Learning: held-out accuracy (chosen scored above rejected) rises well above chance, and the
//    saved checkpoint, read back by load_reward_model, scores the held-out pairs the same way.
//  - A missing pairs file is one line.
#include <gtest/gtest.h>

#include <cstdio>

#include "core/autograd/grad_mode.h"
#include "data/chat_template.h"
#include "launcher/checkpoint_argument.h"
#include "launcher/checkpoint_state.h"
#include "launcher/dpo_test_util.h"
#include "launcher/reward_model_trainer.h"
#include "posttrain/losses.h"

namespace tessera {
namespace {

using testing::ArithmeticPair;
using testing::TemporaryFolder;

PreferenceRunConfig rm_config(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return preference_config_from_recipe(PreferenceMethod::kRewardModel, yaml, "rm.yaml", overrides);
}

float reward_of(const RewardModel& model, const ChatTemplate& chat, const std::string& prompt,
                const std::string& answer) {
  const RenderedConversation whole = chat.render({{ChatRole::kUser, prompt}, {ChatRole::kAssistant, answer}});
  const int64_t length = int64_t(whole.tokens.size());
  std::vector<int64_t> ids(whole.tokens.begin(), whole.tokens.end());
  NoGradGuard no_grad;
  return float(model.rewards(Tensor::from_vector(ids, {1, length}), {length}).item());
}

class RewardModelTrain : public ::testing::Test {
 protected:
  void SetUp() override {
    pairs_ = testing::arithmetic_pairs(10, 5);
    testing::write_pairs(folder_.file("train.jsonl"), {pairs_.begin(), pairs_.begin() + 80});
    testing::write_pairs(folder_.file("valid.jsonl"), {pairs_.begin() + 80, pairs_.end()});
  }
  std::string recipe(const std::string& extra = "") const {
    return testing::preference_recipe("reward_model", folder_.file("train.jsonl"), folder_.file("valid.jsonl"),
                                      folder_.file("run"), extra);
  }
  double held_out_accuracy(const RewardModel& model) const {
    const ChatTemplate chat = ChatTemplate::for_family("gpt2", testing::gpt2_tokenizer());
    int correct = 0;
    for (size_t i = 80; i < pairs_.size(); ++i) {
      correct += reward_of(model, chat, pairs_[i].prompt, pairs_[i].chosen) >
                         reward_of(model, chat, pairs_[i].prompt, pairs_[i].rejected)
                     ? 1
                     : 0;
    }
    return double(correct) / double(pairs_.size() - 80);
  }

  TemporaryFolder folder_;
  std::vector<ArithmeticPair> pairs_;
};

TEST_F(RewardModelTrain, FirstStepIsBradleyTerryOfIndependentRewards) {
  const PreferenceRunConfig probe = rm_config(recipe());
  testing::save_seeded_model(probe.train, 21, folder_.file("init"));
  const PreferenceRunConfig config = rm_config(recipe("  init_from: " + folder_.file("init") + "\n"));
  RewardModelTrainer trainer(config, [](const std::string&) {});
  const PreferenceResult result = trainer.run();

  // The starting model: the checkpoint's backbone and the head drawn from the run's seed.
  RewardModel start(config.train.model, config.train.seed);
  load_model_weights(load_checkpoint_argument(folder_.file("init"), "test").checkpoint, "init", start.backbone());
  const ChatTemplate chat = ChatTemplate::for_family("gpt2", testing::gpt2_tokenizer());
  std::vector<float> chosen, rejected;
  for (int64_t index : preference_step_pairs(80, 0, 8, config.train.seed)) {
    chosen.push_back(reward_of(start, chat, pairs_[size_t(index)].prompt, pairs_[size_t(index)].chosen));
    rejected.push_back(reward_of(start, chat, pairs_[size_t(index)].prompt, pairs_[size_t(index)].rejected));
  }
  const BradleyTerryResult expected =
      bradley_terry_loss(Tensor::from_vector(chosen, {8}), Tensor::from_vector(rejected, {8}));
  EXPECT_NEAR(result.steps[0].loss, expected.loss.item(), 1e-5);
  EXPECT_NEAR(result.steps[0].accuracy, expected.accuracy.item(), 1e-9);
  double mean_chosen = 0.0;
  for (float r : chosen) mean_chosen += r / 8.0;
  EXPECT_NEAR(result.steps[0].chosen_reward, mean_chosen, 1e-5);
}

TEST_F(RewardModelTrain, HeldOutAccuracyRisesAboveChanceAndTheCheckpointReadsBack) {
  const PreferenceRunConfig config =
      rm_config(recipe(), {"train.train_iters=40", "train.eval_interval=40", "checkpoint.save=" + folder_.file("rm"),
                           "logging.log_interval=10"});
  std::vector<std::string> lines;
  RewardModelTrainer trainer(config, [&](const std::string& line) { lines.push_back(line); });
  const double before = held_out_accuracy(trainer.model());
  const PreferenceResult result = trainer.run();
  ASSERT_EQ(result.evaluations.size(), 1u);
  const PreferenceMetrics& held_out = result.evaluations[0];
  std::printf("reward model: train loss %.4f -> %.4f; held-out accuracy %.2f -> %.2f, margin %+.4f\n",
              result.steps.front().loss, result.steps.back().loss, before, held_out.accuracy, held_out.margin);
  for (const std::string& line : lines) std::printf("  %s\n", line.c_str());
  EXPECT_GE(held_out.accuracy, 0.65);  // chance is 0.5 (13 of 20 pairs)
  EXPECT_GT(held_out.accuracy, before) << "training should beat the untrained head";
  EXPECT_GT(held_out.margin, 0.0);
  EXPECT_NEAR(held_out_accuracy(trainer.model()), held_out.accuracy, 1e-9) << "evaluation = unpadded scoring";

  ASSERT_FALSE(result.last_checkpoint.empty());
  const std::unique_ptr<RewardModel> reloaded = load_reward_model(folder_.file("rm"), Device::cpu());
  EXPECT_EQ(held_out_accuracy(*reloaded), held_out.accuracy);
  // An LM checkpoint is not a reward model.
  testing::save_seeded_model(config.train, 3, folder_.file("lm"));
  try {
    load_reward_model(folder_.file("lm"), Device::cpu());
    ADD_FAILURE() << "an LM checkpoint loaded as a reward model";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not a reward model checkpoint"), std::string::npos) << e.what();
  }
}

TEST_F(RewardModelTrain, MissingPairsFileIsOneLine) {
  try {
    rm_config(recipe(), {"reward_model.valid_path=[" + folder_.file("missing.jsonl") + "]"});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(
        std::string(e.what()).find("reward_model.valid_path: " + folder_.file("missing.jsonl") + " does not exist"),
        std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace tessera
