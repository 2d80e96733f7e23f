// `tessera generate` on CPU, end to end: a checkpoint written from a small GPT-2-shaped model
// (whose saved recipe names the real GPT-2 tokenizer files of tests/data/fixtures/gpt2) is
// loaded by run_generate_command, and what it prints must be the continuation generate() gives
// the in-memory model that was saved: the weights, the configuration and the tokenizer all
// made it through. A checkpoint directory resolves to its latest file; the cache-free path
// prints the same text; bad options fail with a reason before any work.
#include "launcher/generate_command.h"

#include <gtest/gtest.h>

#include "data/tokenizer_test_util.h"
#include "launcher/checkpoint.h"
#include "launcher/checkpoint_directory.h"
#include "launcher/recipe.h"
#include "launcher/train_config.h"
#include "models/generation.h"

namespace tessera {
namespace {

using testing::TemporaryFolder;

std::string recipe_yaml(bool with_tokenizer) {
  std::string yaml =
      "model:\n  preset: gpt2-124m\n  num_layers: 2\n  hidden_size: 32\n  num_attention_heads: 4\n"
      "  ffn_hidden_size: 64\n  max_position_embeddings: 64\n  init_method_std: 0.3\n";
  // Keys every recipe needs; generation reads only the model and the tokenizer.
  yaml += "train:\n  micro_batch_size: 1\n  global_batch_size: 1\n  train_iters: 1\n";
  yaml += "data:\n  data_path: [unused]\n";
  if (with_tokenizer) {
    yaml += "  vocab_file: " + (testing::gpt2_fixture_dir() / "encoder.json").string() +
            "\n  merge_file: " + (testing::gpt2_fixture_dir() / "vocab.bpe").string() + "\n";
  }
  return yaml;
}

// Writes the model's weights and the recipe as checkpoint `directory`/iter_0000007.h5.
std::string save(const GptModel& model, const Recipe& recipe, const std::string& directory) {
  TrainingCheckpoint checkpoint;
  checkpoint.config_yaml = recipe.resolved_yaml();
  checkpoint.step = 7;
  for (const auto& [name, parameter] : model.named_parameters()) {
    checkpoint.model[name] = {parameter.detach().clone(), parameter.dtype()};
  }
  std::filesystem::create_directories(directory);
  const std::string path = directory + "/" + checkpoint_file_name(7);
  write_checkpoint_file(path, checkpoint);
  return path;
}

std::string captured_run(const GenerateCommandOptions& options) {
  ::testing::internal::CaptureStdout();
  try {
    run_generate_command(options);
  } catch (...) {
    ::testing::internal::GetCapturedStdout();
    throw;
  }
  return ::testing::internal::GetCapturedStdout();
}

class GenerateCommand : public ::testing::Test {
 protected:
  GenerateCommand()
      : recipe_(Recipe::parse(recipe_yaml(true), "test recipe")),
        model_(model_config_from_recipe(recipe_), 5),
        tokenizer_(Tokenizer::load(testing::gpt2_fixture_dir())) {
    model_.eval();
    path_ = save(model_, recipe_, folder_.file("checkpoints"));
  }

  // What the saved model itself continues `prompts` with, as the command prints it.
  std::string expected(const std::vector<std::string>& prompts, const GenerateCommandOptions& options) {
    std::vector<std::vector<int32_t>> ids;
    for (const std::string& prompt : prompts) ids.push_back(tokenizer_.encode(prompt, SpecialTokens::kRecognize));
    GenerationOptions generation;
    generation.max_new_tokens = options.max_new_tokens;
    generation.sampling = {options.temperature, options.top_k, options.top_p};
    generation.stop_sequences = {{tokenizer_.eod_id()}};
    Generator generator(options.seed);
    const auto outputs = generate(model_, ids, generation, generator);
    std::string text;
    for (size_t i = 0; i < prompts.size(); ++i) {
      text += "--- prompt " + std::to_string(i + 1) + " ---\n" + prompts[i] + tokenizer_.decode(outputs[i]) + "\n";
    }
    return text;
  }

  TemporaryFolder folder_;
  Recipe recipe_;
  GptModel model_;
  Tokenizer tokenizer_;
  std::string path_;
};

TEST_F(GenerateCommand, PrintsTheSavedModelsGreedyContinuation) {
  GenerateCommandOptions options;
  options.checkpoint = path_;
  options.prompts = {"The quick brown fox"};
  options.max_new_tokens = 10;
  options.temperature = 0.0;
  options.device = "cpu";
  const std::string want = expected(options.prompts, options);
  EXPECT_NE(captured_run(options).find(want), std::string::npos) << want;
  // A directory resolves to its latest checkpoint; without the KV cache the text is the same.
  options.checkpoint = folder_.file("checkpoints");
  options.no_kv_cache = true;
  EXPECT_NE(captured_run(options).find(want), std::string::npos) << want;
}

TEST_F(GenerateCommand, SamplesABatchOfPromptsWithTheSeed) {
  GenerateCommandOptions options;
  options.checkpoint = path_;
  options.prompts = {"Once upon a time", "In 1961, the"};
  options.max_new_tokens = 12;
  options.temperature = 0.8;
  options.top_k = 50;
  options.top_p = 0.9;
  options.seed = 99;
  options.device = "cpu";
  const std::string want = expected(options.prompts, options);
  EXPECT_NE(captured_run(options).find(want), std::string::npos) << want;
}

TEST_F(GenerateCommand, RejectsBadRequestsWithAReason) {
  GenerateCommandOptions options;
  options.checkpoint = path_;
  options.prompts = {"Hello"};
  options.device = "cpu";
  auto message_of = [](const GenerateCommandOptions& o) {
    try {
      captured_run(o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  GenerateCommandOptions bad = options;
  bad.top_p = 0.0;
  EXPECT_NE(message_of(bad).find("top_p"), std::string::npos);
  bad = options;
  bad.device = "tpu";
  EXPECT_NE(message_of(bad).find("--device"), std::string::npos);
  bad = options;
  bad.checkpoint = folder_.file("missing.h5");
  EXPECT_NE(message_of(bad).find("does not exist"), std::string::npos);
  bad = options;
  bad.checkpoint = save(model_, Recipe::parse(recipe_yaml(false), "test recipe"), folder_.file("no_tokenizer"));
  EXPECT_NE(message_of(bad).find("--tokenizer"), std::string::npos);
  bad.tokenizer = testing::gpt2_fixture_dir().string();
  EXPECT_EQ(message_of(bad), "no error");
}

}  // namespace
}  // namespace tessera
