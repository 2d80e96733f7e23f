// `tessera ppo`'s run on a recipe: a tiny GPT-2 checkpoint (the actor), a reward model checkpoint
// written as `tessera reward-model` writes one, a byte-level tokenizer written as GPT-2 files and
// chat JSONL prompts in scripts/make_arithmetic_chat.py's format. Two steps run with the reward
// model as the only reward and the critic started from it, log their metrics, evaluate the
// held-out prompts before and after, and save an actor that reads back as a checkpoint.
// Bad recipes fail before any work with a one-line reason naming the key.
#include "launcher/ppo_command.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "data/bpe_pretokenizer.h"
#include "data/data_test_util.h"
#include "data/tokenizer_files.h"
#include "launcher/checkpoint_argument.h"
#include "launcher/checkpoint_directory.h"
#include "launcher/checkpoint_state.h"
#include "launcher/train_config.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;
using testing::TemporaryFolder;

class PpoCommand : public ::testing::Test {
 protected:
  void SetUp() override {
    TokenizerSpec spec;
    for (int byte = 0; byte < 256; ++byte) spec.vocab[std::string(1, static_cast<char>(byte))] = byte;
    spec.vocab["<|endoftext|>"] = 256;
    spec.pattern = std::string(kGpt2Pattern);
    write_gpt2_tokenizer_files(spec, folder_.file("vocab.json"), folder_.file("merges.txt"));
    for (const char* name : {"train.jsonl", "test.jsonl"}) {
      std::ofstream out(folder_.file(name));
      for (int a = 0; a < 4; ++a)
        out << "{\"messages\": [{\"role\": \"user\", \"content\": \"What is " << a << " + " << a + 1
            << "?\"}, {\"role\": \"assistant\", \"content\": \"" << 2 * a + 1 << "\"}], \"task\": \"add\"}\n";
    }
  }

  std::string recipe_text(const std::string& ppo) const {
    return "model:\n  preset: gpt2-124m\n  num_layers: 1\n  hidden_size: 32\n  num_attention_heads: 2\n"
           "  ffn_hidden_size: 64\n  max_position_embeddings: 64\n"
           "data:\n  vocab_file: " +
           folder_.file("vocab.json") + "\n  merge_file: " + folder_.file("merges.txt") +
           "\n  chat_template: gpt2\n"
           "optimizer:\n  lr: 1.0e-3\n  weight_decay: 0.0\n"
           "train:\n  micro_batch_size: 2\n  global_batch_size: 4\n  train_iters: 2\n  device: cpu\n"
           "  precision: fp32\n"
           "checkpoint:\n  save: " +
           folder_.file("ppo_out") + "\nlogging:\n  run_dir: " + folder_.file("run") + "\nppo:\n  prompts_path: [" +
           folder_.file("train.jsonl") + "]\n  eval_prompts_path: [" + folder_.file("test.jsonl") +
           "]\n  max_new_tokens: 3\n  num_minibatches: 2\n" + ppo;
  }

  // A checkpoint of the recipe's model from `seed` (with a scalar head: a reward model's).
  std::string write_checkpoint(const std::string& name, uint64_t seed, bool reward_model) const {
    const Recipe recipe = Recipe::parse(recipe_text(""), "ppo.yaml");
    const RewardModel model(model_config_from_recipe(recipe), seed);
    TrainingCheckpoint checkpoint;
    checkpoint.config_yaml = recipe.resolved_yaml();
    for (const auto& [key, value] : model.named_parameters())
      if (reward_model || key != "score.weight") checkpoint.model[key] = {value.clone(), DType::F32};
    save_checkpoint(folder_.file(name), checkpoint, 1, [](const std::string&) {});
    return folder_.file(name);
  }

  static std::string error_of(const std::function<void()>& run) {
    try {
      run();
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  }

  TemporaryFolder folder_;
};

TEST_F(PpoCommand, RunsWithARewardModelLogsEvaluatesAndSavesTheActor) {
  const std::string init = write_checkpoint("sft", 3, false);
  const std::string reward_model = write_checkpoint("rm", 4, true);
  const Recipe recipe = Recipe::parse(
      recipe_text("  init_from: " + init + "\n  reward_model: " + reward_model + "\n  reward: none\n"), "ppo.yaml");
  const PpoConfig config = ppo_config_from_recipe(recipe);
  EXPECT_EQ(config.critic_init_from, reward_model) << "the critic defaults to the reward model's weights";
  std::vector<std::string> lines;
  const PpoRunResult result =
      run_ppo(config, recipe.resolved_yaml(), nullptr, [&](const std::string& line) { lines.push_back(line); });
  ASSERT_EQ(result.steps.size(), 2u);
  for (const PpoStepStats& s : result.steps) {
    EXPECT_EQ(s.policy_losses.size(), 2u);  // num_minibatches
    EXPECT_NE(s.mean_reward, 0.0) << "the reward model scores every response";
    EXPECT_GT(s.response_length, 0.0);
    EXPECT_GT(s.value_loss, 0.0);
    EXPECT_GT(s.generation_tokens_per_s, 0.0);
    EXPECT_GT(s.training_tokens_per_s, 0.0);
  }
  ASSERT_EQ(result.evaluations.size(), 2u);
  EXPECT_EQ(result.evaluations[0].first, 0);
  EXPECT_EQ(result.evaluations[1].first, 2);
  EXPECT_EQ(result.evaluations[1].second.samples, 4);
  std::string log;
  for (const std::string& line : lines) log += line + "\n";
  EXPECT_THAT(log, HasSubstr("critic from " + reward_model));
  EXPECT_THAT(log, HasSubstr("step 2/2 | reward"));
  EXPECT_THAT(log, HasSubstr("| value loss "));
  EXPECT_THAT(log, HasSubstr("| explained variance "));
  EXPECT_THAT(log, HasSubstr("eval after 0 steps: held-out reward"));
  std::ifstream metrics(folder_.file("run/metrics.jsonl"));
  int metric_lines = 0;
  for (std::string line; std::getline(metrics, line);) ++metric_lines;
  EXPECT_EQ(metric_lines, 2);

  // The saved actor reads back into the recipe's model, moved from where it started.
  ASSERT_FALSE(result.saved.empty());
  const LoadedCheckpoint saved = load_checkpoint_argument(folder_.file("ppo_out"), "test");
  EXPECT_EQ(saved.checkpoint.step, 2);
  GptModel reloaded(model_config_from_recipe(recipe), 0);
  load_model_weights(saved.checkpoint, saved.path, reloaded);
  const LoadedCheckpoint start = load_checkpoint_argument(init, "test");
  const char* key = "decoder.layers.0.mlp.linear_fc1.weight";
  EXPECT_NE(start.checkpoint.model.at(key).value.to_vector<float>(),
            saved.checkpoint.model.at(key).value.to_vector<float>());
}

// The critic's start: a reward model checkpoint whole (its head is the value head), an LM
// checkpoint as the backbone under a fresh head.
// With a lora: section the actor is the init checkpoint's model frozen plus adapters, the KL
// reference is that model with its adapters off (no copy: the memory line says so and what a copy
// would hold), the critic trains whole, and the saved actor is the adapters alone under a recipe
// whose lora.base names the base checkpoint.
TEST_F(PpoCommand, LoraTrainsTheActorsAdaptersAndTheReferenceIsTheBase) {
  const std::string init = write_checkpoint("sft", 3, false);
  const std::string reward_model = write_checkpoint("rm", 4, true);
  const Recipe recipe = Recipe::parse(recipe_text("  init_from: " + init + "\n  reward_model: " + reward_model +
                                                  "\n  reward: none\n  kl_coef: 0.1\n") +
                                          "lora:\n  rank: 2\n  alpha: 4\n",
                                      "ppo.yaml");
  const PpoConfig config = ppo_config_from_recipe(recipe);
  ASSERT_TRUE(config.model.lora.enabled());
  std::vector<std::string> lines;
  const PpoRunResult result =
      run_ppo(config, recipe.resolved_yaml(), nullptr, [&](const std::string& line) { lines.push_back(line); });
  ASSERT_EQ(result.steps.size(), 2u);
  std::string log;
  for (const std::string& line : lines) log += line + "\n";
  EXPECT_THAT(log, HasSubstr("gradients 0 B, optimizer state 0 B"));
  EXPECT_THAT(log, HasSubstr("reference: the base with adapters off, 0 B extra"));

  const LoadedCheckpoint saved = load_checkpoint_argument(folder_.file("ppo_out"), "test");
  ASSERT_FALSE(saved.checkpoint.model.empty());
  bool trained = false;
  for (const auto& [name, parameter] : saved.checkpoint.model) {
    EXPECT_NE(name.find(".adapter."), std::string::npos) << name << " is not an adapter tensor";
    if (name.find("linear_out") == std::string::npos) continue;  // B starts at zero
    for (float v : parameter.value.to_vector<float>()) trained = trained || v != 0.0f;
  }
  EXPECT_TRUE(trained) << "the adapters' B moved from zero";
  EXPECT_EQ(Recipe::parse(saved.checkpoint.config_yaml, "saved").get_string("lora.base"),
            load_checkpoint_argument(init, "test").path);
}

TEST_F(PpoCommand, CriticStartsFromARewardModelOrAnLmCheckpoint) {
  const Recipe recipe = Recipe::parse(recipe_text(""), "ppo.yaml");
  const TransformerConfig config = model_config_from_recipe(recipe);
  const RewardModel saved_lm(config, 3), saved_rm(config, 4);
  const std::string lm = write_checkpoint("lm", 3, false), rm = write_checkpoint("rm", 4, true);
  const char* key = "decoder.layers.0.self_attention.linear_qkv.weight";
  auto weight = [&](const RewardModel& model, const std::string& name) {
    for (const auto& [n, value] : model.named_parameters())
      if (n == name) return value.to_vector<float>();
    ADD_FAILURE() << "no " << name;
    return std::vector<float>{};
  };
  const std::unique_ptr<RewardModel> from_rm = load_ppo_critic(rm, config, 9, Device::cpu(), DType::F32);
  EXPECT_EQ(weight(*from_rm, key), weight(saved_rm, key));
  EXPECT_EQ(weight(*from_rm, "score.weight"), weight(saved_rm, "score.weight"));
  const std::unique_ptr<RewardModel> from_lm = load_ppo_critic(lm, config, 9, Device::cpu(), DType::F32);
  EXPECT_EQ(weight(*from_lm, key), weight(saved_lm, key));
  EXPECT_EQ(weight(*from_lm, "score.weight"), weight(RewardModel(config, 9), "score.weight"))
      << "a fresh head drawn from the seed";
  EXPECT_NE(weight(*from_lm, "score.weight"), weight(saved_lm, "score.weight"));
}

TEST_F(PpoCommand, BadRecipesFailBeforeWork) {
  auto config = [&](const std::string& ppo) {
    return ppo_config_from_recipe(Recipe::parse(recipe_text(ppo), "ppo.yaml"));
  };
  auto run = [&](const std::string& ppo) { run_ppo(config(ppo), "", nullptr, [](const std::string&) {}); };
  EXPECT_THAT(error_of([&] { config(""); }), HasSubstr("ppo.init_from is not set"));
  EXPECT_THAT(error_of([&] { config("  init_from: x\n  reward: none\n"); }),
              HasSubstr("the recipe has no reward: ppo.reward is none and ppo.reward_model is not set"));
  const std::string missing = folder_.file("no_such_checkpoint");
  EXPECT_THAT(error_of([&] { run("  init_from: " + missing + "\n"); }),
              HasSubstr("ppo.init_from " + missing + " does not exist"));
  const std::string init = write_checkpoint("sft", 3, false);
  EXPECT_THAT(error_of([&] { run("  init_from: " + init + "\n  reward_model: " + missing + "\n"); }),
              HasSubstr("ppo.reward_model " + missing + " does not exist"));
  EXPECT_THAT(error_of([&] { run("  init_from: " + init + "\n  reward_model: " + init + "\n"); }),
              HasSubstr("not a reward model checkpoint"));
  EXPECT_THAT(error_of([&] { config("  init_from: x\n  num_minibatches: 3\n"); }),
              HasSubstr("ppo.num_minibatches 3 must divide each rank's 4 rollout rows"));
  EXPECT_THAT(error_of([&] { Recipe::parse(recipe_text("  init_from: x\n  reward: multiplication\n"), "ppo.yaml"); }),
              HasSubstr("ppo.reward"));
}

}  // namespace
}  // namespace tessera
