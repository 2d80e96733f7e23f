// `tessera dpo`'s trainer (launcher/dpo_trainer.h) on arithmetic preference pairs.
//  - The first step's loss, rewards and accuracy equal posttrain's dpo_loss on sequence
//    log-probs computed here independently: each side rendered by the chat template alone
//    (unpadded), a plain forward of the policy and of the reference model loaded from their
//    checkpoints, log-softmax summed in double over the response tokens. Policy and reference
//    start from different checkpoints (dpo.reference_from), so the loss is not the trivial log 2.
//  - Learning: a briefly SFT-trained model (`tessera train` on the same task's chats) tuned with
//    DPO raises the held-out margin above 0 and the accuracy above chance, and the policy's own
//    preference for the correct answer on held-out pairs rises; its checkpoint loads like any.
//  - Bad recipes are one line before any work.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "data/chat_template.h"
#include "launcher/checkpoint_argument.h"
#include "launcher/checkpoint_state.h"
#include "launcher/dpo_test_util.h"
#include "launcher/dpo_trainer.h"
#include "launcher/recipe.h"
#include "launcher/trainer.h"
#include "posttrain/losses.h"

namespace tessera {
namespace {

using testing::answer_log_prob;
using testing::ArithmeticPair;
using testing::TemporaryFolder;

PreferenceRunConfig dpo_config(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return preference_config_from_recipe(PreferenceMethod::kDpo, yaml, "dpo.yaml", overrides);
}

class DpoTrain : public ::testing::Test {
 protected:
  void SetUp() override {
    pairs_ = testing::arithmetic_pairs(10, 3);  // 100 pairs: 80 to train on, 20 held out
    testing::write_pairs(folder_.file("train.jsonl"), {pairs_.begin(), pairs_.begin() + 80});
    testing::write_pairs(folder_.file("valid.jsonl"), {pairs_.begin() + 80, pairs_.end()});
  }
  std::string recipe(const std::string& extra = "") const {
    return testing::preference_recipe("dpo", folder_.file("train.jsonl"), folder_.file("valid.jsonl"),
                                      folder_.file("run"), extra);
  }

  TemporaryFolder folder_;
  std::vector<ArithmeticPair> pairs_;
};

TEST_F(DpoTrain, FirstStepIsDpoLossOfIndependentLogProbs) {
  // Two different starting points: the reference is not the policy.
  const TrainConfig base = dpo_config(recipe("  init_from: " + folder_.file("train.jsonl") + "\n")).train;
  testing::save_seeded_model(base, 11, folder_.file("policy"));
  testing::save_seeded_model(base, 12, folder_.file("reference"));
  const PreferenceRunConfig config =
      dpo_config(recipe("  init_from: " + folder_.file("policy") + "\n  reference_from: " + folder_.file("reference") +
                        "\n  beta: 0.5\n  label_smoothing: 0.1\n"));
  std::vector<std::string> lines;
  DpoTrainer trainer(config, [&](const std::string& line) { lines.push_back(line); });
  const PreferenceResult result = trainer.run();
  ASSERT_EQ(result.steps.size(), 4u);

  GptModel policy(base.model, 0), reference(base.model, 0);
  load_model_weights(load_checkpoint_argument(folder_.file("policy"), "test").checkpoint, "policy", policy);
  load_model_weights(load_checkpoint_argument(folder_.file("reference"), "test").checkpoint, "reference", reference);
  const Tokenizer& tokenizer = testing::gpt2_tokenizer();
  const ChatTemplate chat = ChatTemplate::for_family("gpt2", tokenizer);
  std::vector<float> pc, pr, rc, rr;
  for (int64_t index : preference_step_pairs(80, 0, 8, config.train.seed)) {
    const ArithmeticPair& pair = pairs_[size_t(index)];
    pc.push_back(float(answer_log_prob(policy, chat, pair.prompt, pair.chosen)));
    pr.push_back(float(answer_log_prob(policy, chat, pair.prompt, pair.rejected)));
    rc.push_back(float(answer_log_prob(reference, chat, pair.prompt, pair.chosen)));
    rr.push_back(float(answer_log_prob(reference, chat, pair.prompt, pair.rejected)));
  }
  auto vec = [](const std::vector<float>& v) { return Tensor::from_vector(v, {int64_t(v.size())}); };
  const DpoResult expected = dpo_loss(vec(pc), vec(pr), vec(rc), vec(rr), DpoOptions{0.5, 0.1, false});
  const PreferenceMetrics& first = result.steps[0];
  EXPECT_GT(std::abs(expected.loss.item() - std::log(2.0)), 1e-3) << "policy and reference should differ";
  EXPECT_NEAR(first.loss, expected.loss.item(), 1e-5);
  EXPECT_NEAR(first.accuracy, expected.accuracy.item(), 1e-9);
  EXPECT_NEAR(first.margin, mean(expected.margins).item(), 1e-4);
  EXPECT_NEAR(first.chosen_reward, mean(expected.chosen_rewards).item(), 1e-4);
  // 4 steps of 8 pairs read 32 distinct training pairs once each, plus the 20 held-out pairs.
  EXPECT_EQ(trainer.reference().computed_pairs(), 32 + 20) << "reference log-probs are cached per pair";
}

TEST_F(DpoTrain, RaisesHeldOutMarginAndAccuracyFromAnSftModel) {
  // SFT start: the same task as chats, a few steps of `tessera train`'s trainer.
  {
    std::ofstream out(folder_.file("sft.jsonl"));
    for (size_t i = 0; i < 80; ++i)
      out << "{\"prompt\": \"" << pairs_[i].prompt << "\", \"response\": \"" << pairs_[i].chosen << "\"}\n";
  }
  const auto fixture = testing::gpt2_fixture_dir();
  const std::string sft =
      "model:\n  preset: gpt2-124m\n  num_layers: 2\n  hidden_size: 64\n  num_attention_heads: 4\n"
      "  ffn_hidden_size: 128\n  max_position_embeddings: 32\n"
      "data:\n  sft_train_path: [" +
      folder_.file("sft.jsonl") + "]\n  vocab_file: " + (fixture / "encoder.json").string() +
      "\n  merge_file: " + (fixture / "vocab.bpe").string() +
      "\n  seq_length: 32\n  sft_packing: sequential\n"
      "optimizer:\n  lr: 3.0e-3\n  min_lr: 3.0e-4\n  weight_decay: 0.0\n"
      "train:\n  micro_batch_size: 8\n  global_batch_size: 8\n  train_iters: 20\n  precision: fp32\n"
      "  device: cpu\n  resume: none\n  eval_interval: 1000\n"
      "checkpoint:\n  save: " +
      folder_.file("sft") +
      "\n  save_interval: 20\n  async_save: false\n"
      "logging:\n  log_interval: 10\n  run_dir: " +
      folder_.file("sft_run") + "\n";
  Trainer(train_config_from_recipe(Recipe::parse(sft, "sft.yaml")), [](const std::string&) {}).run();

  const PreferenceRunConfig config =
      dpo_config(recipe("  init_from: " + folder_.file("sft") + "\n  beta: 0.2\n"),
                 {"train.train_iters=20", "train.eval_interval=20", "checkpoint.save=" + folder_.file("dpo"),
                  "optimizer.lr=1.0e-3", "optimizer.min_lr=1.0e-4", "logging.log_interval=5"});
  std::vector<std::string> lines;
  DpoTrainer trainer(config, [&](const std::string& line) { lines.push_back(line); });
  // The policy's own preference (log pi(chosen) > log pi(rejected)) on the held-out pairs.
  const Tokenizer& tokenizer = testing::gpt2_tokenizer();
  const ChatTemplate chat = ChatTemplate::for_family("gpt2", tokenizer);
  auto prefers_chosen = [&](const GptModel& model) {
    int count = 0;
    for (size_t i = 80; i < pairs_.size(); ++i) {
      count += answer_log_prob(model, chat, pairs_[i].prompt, pairs_[i].chosen) >
                       answer_log_prob(model, chat, pairs_[i].prompt, pairs_[i].rejected)
                   ? 1
                   : 0;
    }
    return double(count) / double(pairs_.size() - 80);
  };
  const double before = prefers_chosen(trainer.policy());
  const PreferenceResult result = trainer.run();
  const double after = prefers_chosen(trainer.policy());
  ASSERT_EQ(result.evaluations.size(), 1u);
  const PreferenceMetrics& held_out = result.evaluations[0];
  std::printf(
      "dpo: train loss %.4f -> %.4f; held-out accuracy %.3f, margin %+.4f; policy prefers chosen on %.2f -> "
      "%.2f of held-out pairs\n",
      result.steps.front().loss, result.steps.back().loss, held_out.accuracy, held_out.margin, before, after);
  for (const std::string& line : lines) std::printf("  %s\n", line.c_str());
  EXPECT_LT(result.steps.back().loss, result.steps.front().loss);
  EXPECT_GT(held_out.margin, 0.0);
  EXPECT_GT(held_out.accuracy, 0.6);
  EXPECT_GT(after, before);

  // The saved policy is an ordinary checkpoint: it loads into the recipe's model.
  ASSERT_FALSE(result.last_checkpoint.empty());
  GptModel reloaded(config.train.model, 0);
  load_model_weights(load_checkpoint_argument(folder_.file("dpo"), "test").checkpoint, "dpo", reloaded);
  EXPECT_EQ(prefers_chosen(reloaded), after);
}

TEST_F(DpoTrain, BadRecipesAreOneLine) {
  auto error_of = [&](const std::string& yaml, const std::vector<std::string>& overrides) {
    try {
      dpo_config(yaml, overrides);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(error_of(recipe(), {}).find("missing reference model: set dpo.init_from"), std::string::npos);
  EXPECT_NE(error_of(recipe(), {"dpo.init_from=" + folder_.file("nothing")}).find("missing reference model"),
            std::string::npos);
  const std::string with_init = recipe("  init_from: " + folder_.file("train.jsonl") + "\n");
  EXPECT_NE(error_of(with_init, {"dpo.train_path=[" + folder_.file("missing.jsonl") + "]"}).find("does not exist"),
            std::string::npos);
  EXPECT_NE(error_of(with_init, {"data.sft_train_path=[" + folder_.file("train.jsonl") + "]"})
                .find("drop data.sft_train_path"),
            std::string::npos);
  EXPECT_NE(error_of(with_init, {"data.vocab_file="}).find("needs the tokenizer"), std::string::npos);
  EXPECT_NE(error_of(with_init, {"dpo.loss=ipo", "dpo.label_smoothing=0.1"}).find("dpo loss only"), std::string::npos);
  EXPECT_NE(error_of(with_init, {"dpo.loss=kto"}).find("dpo.loss"), std::string::npos);
  const std::string no_pairs =
      "model:\n  preset: gpt2-124m\ntrain:\n  micro_batch_size: 1\n  global_batch_size: 1\n"
      "  train_iters: 1\n";
  EXPECT_NE(error_of(no_pairs, {}).find("dpo.train_path is required"), std::string::npos);
}

}  // namespace
}  // namespace tessera
