// `tessera grpo`'s run on a recipe: a tiny GPT-2 checkpoint, a byte-level tokenizer written as
// GPT-2 files and chat JSONL prompts in scripts/make_arithmetic_chat.py's format. Two steps run,
// log their metrics, evaluate the held-out prompts before and after, and save a policy that
// reads back as a checkpoint (the one `tessera generate` loads).
// With LoRA the reference is the base with adapters off and the checkpoint holds the adapters.
// Bad recipes fail before any work with a one-line reason naming the key.
#include "launcher/grpo_command.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/autograd/grad_mode.h"
#include "data/bpe_pretokenizer.h"
#include "data/data_test_util.h"
#include "data/tokenizer_files.h"
#include "launcher/checkpoint_argument.h"
#include "launcher/checkpoint_directory.h"
#include "launcher/checkpoint_state.h"
#include "launcher/export_source.h"
#include "launcher/lora_run.h"
#include "launcher/train_config.h"
#include "models/lora.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;
using testing::TemporaryFolder;

class GrpoCommand : public ::testing::Test {
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

  std::string recipe_text(const std::string& grpo) const {
    return "model:\n  preset: gpt2-124m\n  num_layers: 1\n  hidden_size: 32\n  num_attention_heads: 2\n"
           "  ffn_hidden_size: 64\n  max_position_embeddings: 64\n"
           "data:\n  vocab_file: " +
           folder_.file("vocab.json") + "\n  merge_file: " + folder_.file("merges.txt") +
           "\n  chat_template: gpt2\n"
           "optimizer:\n  lr: 1.0e-3\n  weight_decay: 0.0\n"
           "train:\n  micro_batch_size: 2\n  global_batch_size: 2\n  train_iters: 2\n  device: cpu\n"
           "  precision: fp32\n"
           "checkpoint:\n  save: " +
           folder_.file("grpo_out") +
           "\n"
           "logging:\n  run_dir: " +
           folder_.file("run") +
           "\n"
           "grpo:\n  prompts_path: [" +
           folder_.file("train.jsonl") + "]\n  eval_prompts_path: [" + folder_.file("test.jsonl") +
           "]\n  group_size: 2\n  max_new_tokens: 3\n  num_minibatches: 2\n" + grpo;
  }

  // The starting checkpoint: the recipe's model from seed 3, saved as `tessera import` would.
  std::string write_init_checkpoint() const {
    const Recipe recipe = Recipe::parse(recipe_text(""), "grpo.yaml");
    const GptModel model(model_config_from_recipe(recipe), 3);
    TrainingCheckpoint checkpoint;
    checkpoint.config_yaml = recipe.resolved_yaml();
    for (const auto& [name, value] : model.named_parameters()) checkpoint.model[name] = {value.clone(), DType::F32};
    save_checkpoint(folder_.file("sft"), checkpoint, 1, [](const std::string&) {});
    return folder_.file("sft");
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

TEST_F(GrpoCommand, RunsLogsEvaluatesAndSavesThePolicy) {
  const std::string init = write_init_checkpoint();
  const Recipe recipe = Recipe::parse(recipe_text("  init_from: " + init + "\n"), "grpo.yaml");
  std::vector<std::string> lines;
  const GrpoRunResult result = run_grpo(grpo_config_from_recipe(recipe), recipe.resolved_yaml(), nullptr,
                                        [&](const std::string& line) { lines.push_back(line); });
  ASSERT_EQ(result.steps.size(), 2u);
  for (const GrpoStepStats& s : result.steps) {
    EXPECT_EQ(s.update_losses.size(), 2u);  // num_minibatches
    EXPECT_GE(s.mean_reward, 0.0);
    EXPECT_GT(s.response_length, 0.0);
    EXPECT_GT(s.generation_tokens_per_s, 0.0);
    EXPECT_GT(s.training_tokens_per_s, 0.0);
  }
  ASSERT_EQ(result.evaluations.size(), 2u);
  EXPECT_EQ(result.evaluations[0].first, 0);
  EXPECT_EQ(result.evaluations[1].first, 2);
  EXPECT_EQ(result.evaluations[1].second.samples, 4);
  std::string log;
  for (const std::string& line : lines) log += line + "\n";
  EXPECT_THAT(log, HasSubstr("step 2/2 | reward"));
  EXPECT_THAT(log, HasSubstr("| kl "));
  EXPECT_THAT(log, HasSubstr("tokens/s"));
  EXPECT_THAT(log, HasSubstr("eval after 0 steps: held-out reward"));
  std::ifstream metrics(folder_.file("run/metrics.jsonl"));
  int metric_lines = 0;
  for (std::string line; std::getline(metrics, line);) ++metric_lines;
  EXPECT_EQ(metric_lines, 2);

  // The saved policy reads back into the recipe's model. An untrained model's answers are all
  // wrong, so every advantage is 0, and at policy = reference so is the KL gradient: AdamW (no
  // weight decay) leaves the weights exactly where they started. A right answer would move them.
  ASSERT_FALSE(result.saved.empty());
  const LoadedCheckpoint saved = load_checkpoint_argument(folder_.file("grpo_out"), "test");
  EXPECT_EQ(saved.checkpoint.step, 2);
  GptModel reloaded(model_config_from_recipe(recipe), 0);
  load_model_weights(saved.checkpoint, saved.path, reloaded);
  const LoadedCheckpoint start = load_checkpoint_argument(init, "test");
  const auto& before = start.checkpoint.model.at("decoder.layers.0.mlp.linear_fc1.weight").value;
  const auto& after = saved.checkpoint.model.at("decoder.layers.0.mlp.linear_fc1.weight").value;
  const bool all_wrong = result.steps[0].mean_reward == 0.0 && result.steps[1].mean_reward == 0.0;
  EXPECT_EQ(before.to_vector<float>() == after.to_vector<float>(), all_wrong);
}

// With a lora section: the memory lines show the base frozen (no gradient, no optimizer state)
// and the reference held as 0 B against a copy's bytes counted here; the checkpoint holds the
// adapters alone, its recipe names grpo.init_from's checkpoint as lora.base, and export's merged
// model gives the logits of a LoRA model built here from that base and the saved adapters.
TEST_F(GrpoCommand, LoraTrainsAdaptersOnTheFrozenBaseWithoutAReferenceCopy) {
  const std::string init = write_init_checkpoint();
  const Recipe recipe = Recipe::parse(
      recipe_text("  init_from: " + init + "\n  kl_coef: 0.1\n") + "lora:\n  rank: 2\n  alpha: 4\n", "grpo.yaml");
  const GrpoConfig config = grpo_config_from_recipe(recipe);
  ASSERT_TRUE(config.model.lora.enabled());
  std::vector<std::string> lines;
  const GrpoRunResult result =
      run_grpo(config, recipe.resolved_yaml(), nullptr, [&](const std::string& line) { lines.push_back(line); });
  ASSERT_EQ(result.steps.size(), 2u);
  TransformerConfig plain = config.model;
  plain.lora = {};
  int64_t base_elements = 0;
  for (const Tensor& p : GptModel(plain, 0).parameters()) base_elements += p.numel();
  std::string log;
  for (const std::string& line : lines) log += line + "\n";
  EXPECT_THAT(log, HasSubstr(fmt::format("frozen base {} parameters", base_elements)));
  EXPECT_THAT(log, HasSubstr("gradients 0 B, optimizer state 0 B"));
  EXPECT_THAT(log, HasSubstr(fmt::format("reference: the base with adapters off, 0 B extra (a frozen copy of the model "
                                         "would hold {:.2f} MiB)",
                                         double(base_elements * 4) / double(1 << 20))));

  const LoadedCheckpoint start = load_checkpoint_argument(init, "test");
  const LoadedCheckpoint saved = load_checkpoint_argument(folder_.file("grpo_out"), "test");
  GptModel lora(config.model, 0);
  load_lora_base(init, lora);
  StateDict adapters = lora_state_dict(lora);
  EXPECT_EQ(saved.checkpoint.model.size(), adapters.size());
  for (auto& [name, value] : adapters) value = saved.checkpoint.model.at(name).value;
  load_lora_state_dict(lora, adapters);
  EXPECT_EQ(Recipe::parse(saved.checkpoint.config_yaml, "saved").get_string("lora.base"), start.path);

  const ExportSource source = load_export_source(folder_.file("grpo_out"));
  EXPECT_FALSE(source.config.lora.enabled());
  GptModel merged(source.config, 0);
  NoGradGuard no_grad;
  for (auto& [name, value] : merged.named_parameters()) value.copy_(source.parameters.at(name));
  const Tensor tokens = Tensor::from_vector(std::vector<int64_t>{87, 104, 97, 116, 32, 49, 43, 50}, {1, 8});
  const std::vector<float> a = merged.forward(tokens).to_vector<float>(), b = lora.forward(tokens).to_vector<float>();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-5) << i;
}

TEST_F(GrpoCommand, BadRecipesFailBeforeWork) {
  auto config = [&](const std::string& grpo) {
    const Recipe recipe = Recipe::parse(recipe_text(grpo), "grpo.yaml");
    return grpo_config_from_recipe(recipe);
  };
  EXPECT_THAT(error_of([&] { config(""); }), HasSubstr("grpo.init_from is not set"));
  const std::string missing = folder_.file("no_such_checkpoint");
  EXPECT_THAT(
      error_of([&] { run_grpo(config("  init_from: " + missing + "\n"), "", nullptr, [](const std::string&) {}); }),
      HasSubstr("grpo.init_from " + missing + " does not exist"));
  EXPECT_THAT(error_of([&] { Recipe::parse(recipe_text("  init_from: x\n  group_size: 1\n"), "grpo.yaml"); }),
              HasSubstr("grpo.group_size"));
  EXPECT_THAT(error_of([&] { config("  init_from: x\n  group_size: 3\n"); }),
              HasSubstr("train.micro_batch_size 2 must divide each minibatch's 3 rows"));
  EXPECT_THAT(error_of([&] { config("  init_from: x\n  reward: multiplication\n"); }), HasSubstr("grpo.reward"));
  const std::string bad_target =
      error_of([&] { config("  init_from: x\nlora:\n  rank: 2\n  target_modules: [linear_qkv, q_proj]\n"); });
  EXPECT_THAT(bad_target, HasSubstr("lora.target_modules: unknown target 'q_proj'"));
  EXPECT_EQ(bad_target.find('\n'), std::string::npos);
  EXPECT_THAT(error_of([&] { config("  init_from: x\nlora:\n  rank: 2\n  base: y\n"); }),
              HasSubstr("with LoRA in grpo the frozen base is grpo.init_from (x); drop lora.base"));
}

}  // namespace
}  // namespace tessera
