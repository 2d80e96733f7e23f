// `tessera train` on chat JSONL (data.sft_train_path): addition problems as chat turns, packed
// into rows, loss only on the assistant's answer. Checked against an independent computation:
// the first step's logged loss equals the mean cross-entropy over the loss-mask tokens of the
// same rows (read through the SFT dataset and loader) under a model built from the same seed,
// which fails if the trainer dropped the mask, the document lengths or the per-token weight.
// Then training lowers the training and validation losses. Bad SFT settings are one line.
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "data/data_test_util.h"
#include "data/tokenizer_test_util.h"
#include "launcher/recipe.h"
#include "launcher/sft_data.h"
#include "launcher/trainer.h"
#include "models/gpt_model.h"

namespace tessera {
namespace {

using testing::TemporaryFolder;

void write_addition_chats(const std::string& path, int count, uint32_t seed) {
  std::ofstream out(path);
  std::mt19937 engine(seed);
  for (int i = 0; i < count; ++i) {
    const int a = int(engine() % 50), b = int(engine() % 50);
    out << "{\"messages\": [{\"role\": \"user\", \"content\": \"" << a << "+" << b
        << "=\"}, {\"role\": \"assistant\", \"content\": \"" << a + b << "\"}]}\n";
  }
}

class SftTrain : public ::testing::Test {
 protected:
  void SetUp() override {
    write_addition_chats(folder_.file("train.jsonl"), 400, 1);
    write_addition_chats(folder_.file("valid.jsonl"), 40, 2);
  }

  std::string recipe(const std::string& extra = "") const {
    const auto fixture = testing::gpt2_fixture_dir();
    return "model:\n  preset: gpt2-124m\n  num_layers: 2\n  hidden_size: 64\n  num_attention_heads: 4\n"
           "  ffn_hidden_size: 128\n  max_position_embeddings: 64\n"
           "data:\n  sft_train_path: [" + folder_.file("train.jsonl") + "]\n  sft_valid_path: [" +
           folder_.file("valid.jsonl") + "]\n  vocab_file: " + (fixture / "encoder.json").string() +
           "\n  merge_file: " + (fixture / "vocab.bpe").string() + "\n  seq_length: 64\n" +
           "optimizer:\n  lr: 3.0e-3\n  min_lr: 3.0e-4\n  weight_decay: 0.0\n  clip_grad: 1.0\n"
           "scheduler:\n  lr_warmup_iters: 2\n"
           "train:\n  micro_batch_size: 2\n  global_batch_size: 4\n  train_iters: 25\n  eval_interval: 25\n"
           "  eval_iters: 2\n  precision: fp32\n  device: cpu\n  resume: none\n" +
           "logging:\n  log_interval: 5\n  run_dir: " + folder_.file("run") + "\n" + extra;
  }

  TemporaryFolder folder_;
};

TEST_F(SftTrain, FirstLossIsTheMaskedMeanAndTrainingLowersIt) {
  const TrainConfig config = train_config_from_recipe(Recipe::parse(recipe(), "sft.yaml", {}));
  // Independently: the same rows, the same initial weights, the mean over counted tokens.
  const SftDatasets data = load_sft_datasets(config, [](const std::string&) {});
  DataLoader loader(data.train, DataLoaderOptions{.micro_batch_size = config.micro_batch_size});
  GptModel model(config.model, config.seed, ParamOptions{DType::F32, Device::cpu()});
  double loss_sum = 0.0, counted = 0.0;
  for (int micro = 0; micro < 2; ++micro) {
    const MicroBatch mb = *loader.next();
    Shape shape{mb.rows, mb.sequence_length};
    LmBatch batch{Tensor::from_vector(mb.tokens, shape), Tensor::from_vector(mb.labels, shape),
                  Tensor::from_vector(mb.loss_mask, shape)};
    batch.document_lengths = mb.document_lengths;
    EXPECT_GT(mb.document_lengths[0].size(), 2u) << "rows should pack several conversations";
    loss_sum += model.loss(batch, LossReduction::Sum).item();
    counted += counted_tokens(mb);
  }
  EXPECT_LT(counted, 0.5 * 4 * 64) << "the mask should keep only the answers";

  std::vector<std::string> lines;
  Trainer trainer(config, [&](const std::string& line) { lines.push_back(line); });
  const TrainResult result = trainer.run();
  ASSERT_EQ(result.steps.size(), 25u);
  EXPECT_NEAR(result.steps[0].loss, loss_sum / counted, 1e-6 * loss_sum / counted);
  double first = 0.0, last = 0.0;
  for (int i = 0; i < 5; ++i) first += result.steps[size_t(i)].loss, last += result.steps[size_t(20 + i)].loss;
  std::printf("sft: first 5 steps mean loss %.3f, last 5 %.3f\n", first / 5, last / 5);
  EXPECT_LT(last, 0.8 * first);
  ASSERT_EQ(result.validation_losses.size(), 1u);
  EXPECT_LT(result.validation_losses[0].second, first / 5);
  bool reported = false;
  for (const std::string& line : lines) reported |= line.find("packing efficiency") != std::string::npos;
  EXPECT_TRUE(reported) << "the packing report is logged";
}

TEST_F(SftTrain, BadSettingsAreOneLine) {
  auto error_of = [&](const std::string& yaml, const std::vector<std::string>& overrides) {
    try {
      train_config_from_recipe(Recipe::parse(yaml, "sft.yaml", overrides));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(error_of(recipe(), {"data.sft_train_path=[" + folder_.file("missing.jsonl") + "]"}).find("does not exist"),
            std::string::npos);
  EXPECT_NE(error_of(recipe(), {"data.vocab_file="}).find("needs the tokenizer"), std::string::npos);
  EXPECT_NE(error_of(recipe(), {"data.data_path=[x]"}).find("both set"), std::string::npos);
  const std::string no_data =
      "model:\n  preset: gpt2-124m\ntrain:\n  micro_batch_size: 1\n  global_batch_size: 1\n  train_iters: 1\n";
  EXPECT_NE(error_of(no_data, {}).find("data.data_path is required"), std::string::npos);
}

}  // namespace
}  // namespace tessera
