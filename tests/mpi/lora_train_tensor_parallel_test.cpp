// `tessera train` with LoRA under mpirun (np 2 and 4) against the single-rank LoRA run of the same
// recipe: tp 2 (dp the rest of the world), tp 2 with sequence parallelism, and ZeRO-1 over every
// rank. The frozen base is loaded from a plain checkpoint (lora.base) and cut into tp shards;
// only the adapters get gradients, buckets and optimizer state. Every step's loss and the final
// validation loss equal the single-rank run's (f32, 1e-5 relative), and the adapter checkpoint
// saved with tp 2 (B split by rows for linear_qkv / fc1, A by columns for linear_proj / fc2)
// holds the single-rank checkpoint's tensors: adapters and their AdamW moments (to 1e-2 of each
// tensor's norm). The base checkpoint is padded for tp 1, the tp 2 model's vocabulary
// for tp 2: the loader re-pads the table.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <fstream>
#include <random>

#include "data/data_test_util.h"
#include "data/tokenizer_test_util.h"
#include "launcher/distributed_checkpoint.h"
#include "launcher/recipe.h"
#include "launcher/trainer.h"
#include "parallel/mpi_communicator.h"
#include "parallel/process_groups.h"

namespace tessera {
namespace {

using testing::TemporaryFolder;

constexpr double kTolerance = 1e-5;

void write_addition_chats(const std::string& path, int count, uint32_t seed) {
  std::ofstream out(path);
  std::mt19937 engine(seed);
  for (int i = 0; i < count; ++i) {
    const int a = int(engine() % 50), b = int(engine() % 50);
    out << "{\"messages\": [{\"role\": \"user\", \"content\": \"" << a << "+" << b
        << "=\"}, {\"role\": \"assistant\", \"content\": \"" << a + b << "\"}]}\n";
  }
}

// Rank 0's string on every rank.
std::string broadcast_string(std::string text) {
  int size = int(text.size());
  MPI_Bcast(&size, 1, MPI_INT, 0, MPI_COMM_WORLD);
  text.resize(size_t(size));
  MPI_Bcast(text.data(), size, MPI_CHAR, 0, MPI_COMM_WORLD);
  return text;
}

struct Layout {
  int tp = 1;
  bool sequence_parallel = false;
  int zero_stage = 0;
  std::string describe() const {
    return "tp " + std::to_string(tp) + (sequence_parallel ? " + sp" : "") + ", ZeRO-" + std::to_string(zero_stage);
  }
};

class LoraTrainTensorParallel : public ::testing::Test {
 protected:
  // data_folder: this rank's chat files; out: the run and checkpoint folders.
  std::string recipe(const std::string& data_folder, const std::string& out, const Layout& layout,
                     const std::string& lora) const {
    const auto fixture = testing::gpt2_fixture_dir();
    return "model:\n  preset: gpt2-124m\n  num_layers: 2\n  hidden_size: 64\n  num_attention_heads: 4\n"
           "  ffn_hidden_size: 128\n  max_position_embeddings: 64\n"
           "parallel:\n  tensor_model_parallel_size: " +
           std::to_string(layout.tp) + "\n  sequence_parallel: " + (layout.sequence_parallel ? "true" : "false") +
           "\n  zero_stage: " + std::to_string(layout.zero_stage) + "\n" + "data:\n  sft_train_path: [" + data_folder +
           "/train.jsonl]\n  sft_valid_path: [" + data_folder +
           "/valid.jsonl]\n  vocab_file: " + (fixture / "encoder.json").string() +
           "\n  merge_file: " + (fixture / "vocab.bpe").string() + "\n  seq_length: 64\n" +
           "optimizer:\n  lr: 1.0e-2\n  weight_decay: 0.0\n  clip_grad: 1.0\n"
           "train:\n  micro_batch_size: 1\n  global_batch_size: 4\n  train_iters: 4\n  eval_interval: 4\n"
           "  eval_iters: 1\n  precision: fp32\n  device: cpu\n" +
           (layout.zero_stage == 0 ? "checkpoint:\n  save: " + out + "_ckpt\n  async_save: false\n" : "") +
           "logging:\n  log_interval: 10\n  run_dir: " + out + "\n" + lora;
  }

  MpiCommunicator world_{MPI_COMM_WORLD, "world"};
};

TEST_F(LoraTrainTensorParallel, EqualsTheSingleRankRun) {
  TemporaryFolder own;
  write_addition_chats(own.file("train.jsonl"), 200, 1);
  write_addition_chats(own.file("valid.jsonl"), 20, 2);
  const std::string shared = broadcast_string(own.path().string());  // rank 0's folder: checkpoints
  const int rank = world_.rank(), size = world_.size();
  const Trainer::Log quiet = [](const std::string&) {};
  const auto parse = [](const std::string& yaml) { return Recipe::parse(yaml, "lora.yaml", {}); };

  // The base: a plain single-process run of rank 0.
  if (rank == 0) Trainer(train_config_from_recipe(parse(recipe(shared, shared + "/base", {}, ""))), quiet).run(2);
  world_.barrier();
  const std::string lora = "lora:\n  rank: 4\n  alpha: 8\n  base: " + shared + "/base_ckpt/iter_0000002\n";

  // The single-rank LoRA run (rank 0's; its losses broadcast: 4 steps, then validation).
  TrainResult reference;
  std::vector<double> expected(5, 0.0);
  if (rank == 0) {
    reference = Trainer(train_config_from_recipe(parse(recipe(shared, shared + "/single", {}, lora))), quiet).run();
    EXPECT_EQ(reference.steps.size(), 4u);
    EXPECT_EQ(reference.validation_losses.size(), 1u);
    for (size_t i = 0; i < 4 && i < reference.steps.size(); ++i) expected[i] = reference.steps[i].loss;
    if (!reference.validation_losses.empty()) expected[4] = reference.validation_losses[0].second;
  }
  MPI_Bcast(expected.data(), 5, MPI_DOUBLE, 0, MPI_COMM_WORLD);

  for (const Layout& layout : {Layout{2, false, 0}, Layout{2, true, 0}, Layout{1, false, 1}}) {
    SCOPED_TRACE(layout.describe());
    const std::string out = shared + "/" + std::to_string(layout.tp) + (layout.sequence_parallel ? "sp" : "") +
                            "_zero" + std::to_string(layout.zero_stage);
    const TrainConfig config = train_config_from_recipe(parse(recipe(own.path().string(), out, layout, lora)),
                                                        LaunchContext{rank, size, 0, 1});
    ProcessGroups groups(world_, {.tp = layout.tp, .dp = size / layout.tp});
    const TrainResult result = Trainer(config, quiet, &groups).run();
    ASSERT_EQ(result.steps.size(), 4u);
    for (size_t i = 0; i < result.steps.size(); ++i)
      EXPECT_LE(std::abs(result.steps[i].loss - expected[i]), kTolerance * expected[i]) << "step " << i + 1;
    ASSERT_EQ(result.validation_losses.size(), 1u);
    EXPECT_LE(std::abs(result.validation_losses[0].second - expected[4]), kTolerance * expected[4]);

    if (layout.zero_stage != 0 || rank != 0) continue;
    // The tp checkpoint holds the single-rank one's tensors, whole.
    CheckpointReader single(reference.saved_checkpoints.back()), parallel(result.saved_checkpoints.back());
    ASSERT_EQ(single.metadata().tensors.size(), parallel.metadata().tensors.size());
    for (const auto& [name, tensor] : single.metadata().tensors) {
      ASSERT_TRUE(parallel.has(name)) << name;
      const std::vector<float> a = single.read_full(name).to_vector<float>();
      const std::vector<float> b = parallel.read_full(name).to_vector<float>();
      ASSERT_EQ(a.size(), b.size()) << name;
      double difference = 0.0, norm = 0.0;
      for (size_t i = 0; i < a.size(); ++i) {
        difference += double(a[i] - b[i]) * double(a[i] - b[i]);
        norm += double(a[i]) * double(a[i]);
      }
      // Relative in norm, and looser than the losses: Adam divides by sqrt(exp_avg_sq), so an
      // element whose gradient is near zero turns a rounding difference of the tp reductions into
      // a visible one. A box in the wrong place would differ by O(1).
      EXPECT_LE(std::sqrt(difference), 1e-2 * std::sqrt(norm) + 1e-12) << name;
    }
  }
  world_.barrier();  // rank 0's folder outlives every rank's reads
}

}  // namespace
}  // namespace tessera
