// A rank's training state through a distributed checkpoint, in one process: captured, written,
// committed and restored into a model and optimizer built from other seeds, it holds bit for bit
// the saving run's state, checked by taking the same next step in both (f32 with dropout, and
// bf16 with separate f32 masters); an interleaved pipeline rank writes only its chunks' layers and
// each chunk's stream, which come back only into the same chunk layout.
#include <gtest/gtest.h>

#include <memory>

#include "data/data_test_util.h"
#include "launcher/tiny_training_run.h"
#include "launcher/checkpoint_sharding.h"
#include "parallel/pipeline_layout.h"

namespace tessera {
namespace {

using testing::batch_for;
using testing::TemporaryFolder;
using testing::tiny_config;
using testing::TinyRun;

// Writes `rank` as the only rank of a committed checkpoint of `step` in `directory`.
std::string save(const std::string& directory, int64_t step, RankCheckpoint rank, int64_t optimizer_steps,
                 CheckpointLayout layout = {}) {
  const std::string folder = prepare_checkpoint_folder(directory, step);
  write_rank_file(folder, rank);
  CheckpointMetadata metadata;
  metadata.step = step;
  metadata.optimizer_steps_taken = optimizer_steps;
  metadata.layout = layout;
  commit_checkpoint(folder, metadata);
  return folder;
}

void expect_bitwise_equal(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  ASSERT_EQ(a.dtype(), b.dtype()) << what;
  EXPECT_EQ(a.to(DType::F32).to_vector<float>(), b.to(DType::F32).to_vector<float>()) << what;
}

void expect_same_state(const TinyRun& a, const TinyRun& b) {
  auto pa = a.model->named_parameters(), pb = b.model->named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    expect_bitwise_equal(pa[i].second, pb[i].second, pa[i].first);
    expect_bitwise_equal(a.optimizer->master_weight(i), b.optimizer->master_weight(i), "master " + pa[i].first);
    expect_bitwise_equal(a.optimizer->exp_avg(i), b.optimizer->exp_avg(i), "exp_avg " + pa[i].first);
    expect_bitwise_equal(a.optimizer->exp_avg_sq(i), b.optimizer->exp_avg_sq(i), "exp_avg_sq " + pa[i].first);
  }
  EXPECT_EQ(a.optimizer->steps_taken(), b.optimizer->steps_taken());
  EXPECT_EQ(a.model->dropout_generator().state().seed, b.model->dropout_generator().state().seed);
  EXPECT_EQ(a.model->dropout_generator().state().offset, b.model->dropout_generator().state().offset);
}

TEST(CheckpointSharding, ARestoredRunTakesBitwiseTheSameNextStepAsTheOriginal) {
  for (DType dtype : {DType::F32, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    TemporaryFolder folder;
    TinyRun original(tiny_config(), 1, dtype);
    original.train(3);
    const std::string checkpoint = save(folder.path().string(), 3, capture_rank_checkpoint(*original.model,
                                                                                           *original.optimizer, {}),
                                        original.optimizer->steps_taken());
    CheckpointReader reader(checkpoint);
    const size_t parameters = original.model->parameters().size();
    // Masters only where they are not the parameter itself (bf16).
    EXPECT_EQ(reader.metadata().tensors.size(), parameters * (dtype == DType::F32 ? 3 : 4));
    EXPECT_EQ(reader.tensor("model/decoder.final_layernorm.weight").dtype, dtype);

    TinyRun restored(tiny_config(), 2, dtype);  // other weights and dropout seed: everything must come from the files
    restore_rank_checkpoint(reader, *restored.model, *restored.optimizer);
    EXPECT_TRUE(restore_rank_rng(reader, *restored.model, {}));
    restored.steps = reader.metadata().step;  // the next batch
    expect_same_state(original, restored);
    if (dtype == DType::BF16) {  // the masters hold more than the bf16 weights
      EXPECT_NE(original.optimizer->master_weight(0).to_vector<float>(),
                original.model->parameters()[0].to(DType::F32).to_vector<float>());
    }
    // The next update depends on every piece (weights, moments, bias-correction step, dropout stream).
    original.train(1);
    restored.train(1);
    expect_same_state(original, restored);
  }
}

// Stage 0 of pp 2 x vpp 2 over 4 layers holds layers 0 and 2, one chunk each.
TEST(CheckpointSharding, AnInterleavedPipelineRankWritesItsChunksAndTheirOwnStreams) {
  TemporaryFolder folder;
  PipelineLayoutOptions options;
  options.num_layers = 4;
  options.pp = 2;
  options.vpp = 2;
  PipelineLayout layout(options);
  auto chunk = [&](int c) {
    return std::make_unique<GptModel>(tiny_config(4), 5, ParamOptions{},
                                      ModelParallelism{.pipeline = layout, .pipeline_stage = {0, c}});
  };
  std::unique_ptr<GptModel> first = chunk(0), second = chunk(1);
  std::vector<Tensor> parameters = first->parameters(), more = second->parameters();
  parameters.insert(parameters.end(), more.begin(), more.end());
  AdamW optimizer(parameters, AdamWOptions{.lr = 1e-2});
  second->dropout_generator().set_state({99, 12});
  ModelPiece piece({first.get(), second.get()});
  const CheckpointRank at{.tp = 1, .pp = 2};
  const std::string checkpoint = save(folder.path().string(), 1, capture_rank_checkpoint(piece, optimizer, at), 0,
                                      CheckpointLayout{.pp = 2, .vpp = 2});
  CheckpointReader reader(checkpoint);
  EXPECT_TRUE(reader.has("model/decoder.layers.0.mlp.linear_fc1.weight"));
  EXPECT_TRUE(reader.has("model/decoder.layers.2.mlp.linear_fc1.weight"));
  EXPECT_FALSE(reader.has("model/decoder.layers.1.mlp.linear_fc1.weight")) << "stage 1's layer";
  ASSERT_EQ(reader.metadata().rng.size(), 2u);
  EXPECT_EQ(reader.metadata().rng[1].chunk, 1);
  EXPECT_EQ(reader.metadata().rng[1].dropout.seed, 99u);

  second->dropout_generator().set_state({1, 1});
  EXPECT_TRUE(restore_rank_rng(reader, piece, at));
  EXPECT_EQ(second->dropout_generator().state().seed, 99u);
  EXPECT_EQ(second->dropout_generator().state().offset, 12u);
  // One chunk is another layout: its weights would load, its streams are not this rank's.
  EXPECT_FALSE(restore_rank_rng(reader, *second, at));
}

}  // namespace
}  // namespace tessera
