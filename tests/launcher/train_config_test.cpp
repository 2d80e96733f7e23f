// Recipes that cannot run are refused before any work, with the key and a one-line reason:
// missing data, batch sizes that do not divide, sequences longer than the model, parallel
// layouts that do not fit the world or the model or that this build cannot run yet, an
// inconsistent schedule. Layouts are resolved against a launch of N ranks (no MPI needed:
// train_config_from_recipe only reads the world size).
#include "launcher/train_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "core/check.h"
#include "data/indexed_dataset_writer.h"

namespace tessera {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

class TrainConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tessera_train_config_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    prefix_ = (dir_ / "corpus_text_document").string();
    IndexedDatasetWriter writer(prefix_, IndexedDType::UInt16);
    std::vector<int32_t> tokens(300);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t(i % 50);
    writer.add_document(tokens);
    writer.finalize();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string recipe(const std::string& extra_train = "") const {
    return "model:\n  preset: gpt2-124m\n  num_layers: 2\n  max_position_embeddings: 64\n"
           "data:\n  data_path: [" +
           prefix_ +
           "]\n  seq_length: 32\n"
           "train:\n  micro_batch_size: 4\n  global_batch_size: 8\n  train_iters: 10\n  device: cpu\n" +
           extra_train;
  }

  std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {},
                       int world_size = 1) const {
    try {
      train_config_from_recipe(Recipe::parse(yaml, "r.yaml", overrides), launch_of(world_size));
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  }

  TrainConfig config_of(const std::string& yaml, const std::vector<std::string>& overrides, int world_size) const {
    return train_config_from_recipe(Recipe::parse(yaml, "r.yaml", overrides), launch_of(world_size));
  }

  static LaunchContext launch_of(int world_size) { return {.rank = 0, .world_size = world_size}; }

  std::filesystem::path dir_;
  std::string prefix_;
};

TEST_F(TrainConfigTest, AGoodRecipeResolves) {
  TrainConfig c = train_config_from_recipe(Recipe::parse(recipe(), "r.yaml"));
  EXPECT_EQ(c.model.num_layers, 2);
  EXPECT_EQ(c.model.hidden_size, 768);  // from the preset
  EXPECT_EQ(c.grad_accumulation_steps(), 2);
  EXPECT_EQ(c.tokens_per_step(), 8 * 32);
  EXPECT_EQ(c.schedule.decay_steps, 10);  // defaults to train_iters
  EXPECT_EQ(c.device, Device::cpu());
}

TEST_F(TrainConfigTest, MissingDataIsNamedWithTheFix) {
  EXPECT_THAT(
      error_of(recipe(), {"data.data_path=[" + prefix_ + "_missing]"}),
      AllOf(HasSubstr("data.data_path"), HasSubstr("_missing.bin does not exist"), HasSubstr("tessera preprocess")));
}

TEST_F(TrainConfigTest, MicroBatchThatDoesNotDivideTheGlobalBatchIsRefused) {
  EXPECT_THAT(error_of(recipe(), {"train.global_batch_size=10"}),
              AllOf(HasSubstr("train.global_batch_size 10 is not divisible by train.micro_batch_size 4")));
}

TEST_F(TrainConfigTest, SequenceLongerThanTheModelIsRefused) {
  EXPECT_THAT(error_of(recipe(), {"data.seq_length=128"}),
              AllOf(HasSubstr("data.seq_length 128"), HasSubstr("max_position_embeddings 64")));
}

TEST_F(TrainConfigTest, DataParallelSizeIsWhatTheWorldLeaves) {
  TrainConfig c =
      train_config_from_recipe(Recipe::parse(recipe(), "r.yaml", {"train.micro_batch_size=1"}), launch_of(4));
  EXPECT_EQ(c.layout.tp, 1);
  EXPECT_EQ(c.layout.dp, 4);
  EXPECT_EQ(c.grad_accumulation_steps(), 2);  // 8 samples = 1 x 2 micro-batches x 4 ranks
  EXPECT_EQ(c.tokens_per_step(), 8 * 32);     // the global batch, whatever the layout
  EXPECT_EQ(c.ddp_bucket_size_mb, 40.0);
  EXPECT_EQ(c.grad_reduce_dtype, DType::F32) << "gradients reduce in f32 unless parallel.grad_reduce_in_bf16";
  EXPECT_EQ(c.zero_stage, 0);
  EXPECT_EQ(train_config_from_recipe(Recipe::parse(recipe(), "r.yaml",
                                                   {"train.micro_batch_size=1", "train.precision=bf16",
                                                    "parallel.grad_reduce_in_bf16=true"}),
                                     launch_of(4))
                .grad_reduce_dtype,
            DType::BF16);
  for (int stage : {1, 2}) {
    TrainConfig zero = train_config_from_recipe(
        Recipe::parse(recipe(), "r.yaml", {"train.micro_batch_size=1", "parallel.zero_stage=" + std::to_string(stage)}),
        launch_of(4));
    EXPECT_EQ(zero.zero_stage, stage);
  }
  EXPECT_EQ(train_config_from_recipe(Recipe::parse(recipe(), "r.yaml")).layout.dp, 1);
}

TEST_F(TrainConfigTest, LayoutsThatDoNotFitTheWorldOrTheModelAreRefused) {
  // world 4 is not a multiple of tp 3
  EXPECT_THAT(error_of(recipe(), {"parallel.tensor_model_parallel_size=3"}, 4),
              AllOf(HasSubstr("parallel.tensor_model_parallel_size = 3 does not divide the 4 launched rank(s)"),
                    HasSubstr("launch a multiple of 3 ranks")));
  EXPECT_THAT(error_of(recipe(), {"parallel.tensor_model_parallel_size=2"}, 1),
              HasSubstr("parallel.tensor_model_parallel_size = 2 does not divide the 1 launched rank(s)"));
  // gpt2-124m has 12 heads
  EXPECT_THAT(error_of(recipe(), {"parallel.tensor_model_parallel_size=8"}, 8),
              AllOf(HasSubstr("parallel.tensor_model_parallel_size = 8"), HasSubstr("12 attention heads")));
  // the data-parallel size that is left must divide the batch
  EXPECT_THAT(
      error_of(recipe(), {}, 4),
      HasSubstr("train.global_batch_size 8 is not divisible by train.micro_batch_size 4 x data-parallel size 4"));
}

TEST_F(TrainConfigTest, SequenceParallelNeedsTensorParallelismAndADivisibleSequence) {
  EXPECT_THAT(error_of(recipe(), {"parallel.sequence_parallel=true"}), HasSubstr("tensor_model_parallel_size > 1"));
  EXPECT_THAT(
      error_of(recipe(),
               {"parallel.sequence_parallel=true", "parallel.tensor_model_parallel_size=2", "data.seq_length=31"}, 2),
      AllOf(HasSubstr("data.seq_length 31"), HasSubstr("divisible by parallel.tensor_model_parallel_size 2")));
}

TEST_F(TrainConfigTest, WhatThisBuildCannotRunYetIsRefusedWithWhatBringsIt) {
  EXPECT_THAT(error_of(recipe(), {"parallel.context_parallel_size=2"}, 2), HasSubstr("context parallelism arrives"));
  EXPECT_THAT(
      error_of(recipe(),
               {"parallel.zero_stage=2", "parallel.tensor_model_parallel_size=2", "parallel.sequence_parallel=true"},
               2),
      AllOf(HasSubstr("parallel.zero_stage = 2 with parallel.sequence_parallel"), HasSubstr("zero_stage 1")));
  EXPECT_THAT(error_of(recipe(), {"parallel.zero_stage=1", "train.precision=fp16"}, 2),
              AllOf(HasSubstr("fp16 with parallel.zero_stage = 1"), HasSubstr("use bf16")));
  EXPECT_THAT(error_of(recipe(), {"parallel.ddp_bucket_size_mb=0"}),
              HasSubstr("parallel.ddp_bucket_size_mb must be > 0"));
  EXPECT_THAT(error_of(recipe(), {"parallel.grad_reduce_in_bf16=true", "train.precision=fp32"}, 2),
              AllOf(HasSubstr("parallel.grad_reduce_in_bf16 = true needs train.precision = bf16"),
                    HasSubstr("got precision fp32")));
  EXPECT_THAT(error_of(recipe(), {"parallel.tensor_model_parallel_size=2", "train.precision=fp16"}, 2),
              AllOf(HasSubstr("train.precision = fp16"), HasSubstr("use bf16")));
}

TEST_F(TrainConfigTest, ZeroStage3IsFsdpWithAPrefetchDepth) {
  const std::vector<std::string> dp2 = {"train.micro_batch_size=1"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), dp2.begin(), dp2.end());
    return more;
  };
  TrainConfig zero3 = config_of(recipe(), with({"parallel.zero_stage=3"}), 2);
  EXPECT_EQ(zero3.zero_stage, 3);
  EXPECT_EQ(zero3.fsdp_prefetch, 1);  // the default
  TrainConfig fsdp = config_of(recipe(), with({"parallel.fsdp=true", "parallel.fsdp_prefetch=0"}), 2);
  EXPECT_EQ(fsdp.zero_stage, 3) << "parallel.fsdp is another name for zero_stage 3";
  EXPECT_EQ(fsdp.fsdp_prefetch, 0);
  EXPECT_EQ(config_of(recipe(), with({"parallel.fsdp=true", "parallel.zero_stage=3"}), 2).zero_stage, 3);
  // Tensor parallelism without sequence parallelism composes with it.
  EXPECT_EQ(config_of(recipe(), with({"parallel.zero_stage=3", "parallel.tensor_model_parallel_size=2"}), 4).zero_stage,
            3);
  // One process: no refusals (stage 3 has no effect there, checkpoints are the plain ones).
  EXPECT_EQ(config_of(recipe(), {"parallel.zero_stage=3", "checkpoint.save=" + (dir_ / "ckpt").string()}, 1).zero_stage,
            3);
}

TEST_F(TrainConfigTest, ZeroStage3RefusesWhatFsdpCannotRunWithYet) {
  const std::vector<std::string> dp2 = {"train.micro_batch_size=1"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.begin(), dp2.begin(), dp2.end());
    return more;
  };
  for (int stage : {1, 2}) {
    EXPECT_THAT(error_of(recipe(), with({"parallel.fsdp=true", "parallel.zero_stage=" + std::to_string(stage)}), 2),
                AllOf(HasSubstr("command line: parallel.fsdp = true contradicts parallel.zero_stage = " +
                                std::to_string(stage)),
                      HasSubstr("set one of them only")));
  }
  EXPECT_THAT(error_of(recipe(), with({"parallel.fsdp_prefetch=-1"}), 2),
              HasSubstr("parallel.fsdp_prefetch"));  // the schema's range
  EXPECT_THAT(error_of(recipe(),
                       with({"parallel.zero_stage=3", "parallel.tensor_model_parallel_size=2",
                             "parallel.sequence_parallel=true"}),
                       4),
              AllOf(HasSubstr("parallel.zero_stage = 3 with parallel.sequence_parallel is not supported"),
                    HasSubstr("set sequence_parallel false or use zero_stage 1")));
  EXPECT_THAT(error_of(recipe(), with({"parallel.fsdp=true", "parallel.pipeline_model_parallel_size=2"}), 4),
              AllOf(HasSubstr("parallel.fsdp = true with parallel.pipeline_model_parallel_size = 2 is not supported"),
                    HasSubstr("use zero_stage 1 with pipelines")));
  EXPECT_THAT(error_of(recipe(), with({"parallel.zero_stage=3", "train.precision=fp16"}), 2),
              AllOf(HasSubstr("train.precision = fp16 with parallel.zero_stage = 3"), HasSubstr("use bf16")));
  // ZeRO-3 checkpoints: every dp rank saves into dp{d}-of-{n}/ (the trainer), so the recipe takes
  // checkpoint.save and a train.resume directory.
  TrainConfig saving = config_of(recipe(),
                                 with({"parallel.zero_stage=3", "checkpoint.save=" + (dir_ / "ckpt").string(),
                                       "train.resume=" + (dir_ / "ckpt").string()}),
                                 2);
  EXPECT_EQ(saving.zero_stage, 3);
  EXPECT_EQ(saving.save_dir, (dir_ / "ckpt").string());
  EXPECT_EQ(saving.resume, (dir_ / "ckpt").string());
}

TEST_F(TrainConfigTest, PipelineLayoutAndScheduleAreResolvedFromTheRecipe) {
  // 8 samples of micro-batch 1 on dp 1: 8 micro-batches per step.
  const std::vector<std::string> pp2 = {"parallel.pipeline_model_parallel_size=2", "train.micro_batch_size=1",
                                        "model.num_layers=4"};
  TrainConfig plain = config_of(recipe(), pp2, 2);
  EXPECT_EQ(plain.layout.pp, 2);
  EXPECT_EQ(plain.layout.dp, 1);
  EXPECT_EQ(plain.pipeline_schedule, PipelineScheduleKind::OneFOneB);
  EXPECT_EQ(PipelineLayout(plain.pipeline).layers(1, 0), (std::vector<int64_t>{2, 3}));

  std::vector<std::string> interleaved = pp2;
  interleaved.push_back("parallel.virtual_pipeline_model_parallel_size=2");
  TrainConfig chunks = config_of(recipe(), interleaved, 4);
  EXPECT_EQ(chunks.layout.dp, 2);
  EXPECT_EQ(chunks.pipeline_schedule, PipelineScheduleKind::Interleaved1F1B);
  EXPECT_EQ(PipelineLayout(chunks.pipeline).layers(0, 1), (std::vector<int64_t>{2}));
  // Each pp rank saves all its chunks into one checkpoint.
  interleaved.push_back("checkpoint.save=ckpt");
  EXPECT_EQ(config_of(recipe(), interleaved, 4).save_dir, "ckpt");

  std::vector<std::string> gpipe = pp2;
  gpipe.push_back("parallel.pipeline_schedule=gpipe");
  EXPECT_EQ(config_of(recipe(), gpipe, 2).pipeline_schedule, PipelineScheduleKind::GPipe);

  // A layout string implies vpp: 4 virtual stages on pp 2.
  std::vector<std::string> string_layout = pp2;
  string_layout.push_back("parallel.pipeline_model_parallel_layout=Et|t|t|tL");
  TrainConfig from_string = config_of(recipe(), string_layout, 2);
  EXPECT_EQ(PipelineLayout(from_string.pipeline).vpp(), 2);
  EXPECT_EQ(from_string.pipeline_schedule, PipelineScheduleKind::Interleaved1F1B);
}

TEST_F(TrainConfigTest, BadPipelineOptionsAreRefusedNamingTheKey) {
  const std::vector<std::string> pp2 = {"parallel.pipeline_model_parallel_size=2", "train.micro_batch_size=1",
                                        "model.num_layers=4"};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), pp2.begin(), pp2.end());
    return extra;
  };
  EXPECT_THAT(error_of(recipe(), with({"model.num_layers=3"}), 2),
              AllOf(HasSubstr("parallel.pipeline_model_parallel_size: "), HasSubstr("num_layers 3 is not divisible")));
  EXPECT_THAT(error_of(recipe(), with({"parallel.decoder_first_pipeline_num_layers=5"}), 2),
              HasSubstr("parallel.decoder_first_pipeline_num_layers: "));
  EXPECT_THAT(error_of(recipe(), with({"parallel.pipeline_model_parallel_layout=Et|ttL"}), 2),
              AllOf(HasSubstr("parallel.pipeline_model_parallel_layout: "),
                    HasSubstr("places 3 transformer layers (t) but num_layers is 4")));
  EXPECT_THAT(
      error_of(recipe(), with({"parallel.virtual_pipeline_model_parallel_size=2", "train.global_batch_size=3"}), 2),
      AllOf(HasSubstr("parallel.pipeline_schedule interleaved_1f1b"), HasSubstr("3 micro-batches")));
  EXPECT_THAT(error_of(recipe(),
                       with({"parallel.pipeline_schedule=1f1b", "parallel.virtual_pipeline_model_parallel_size=2"}), 2),
              HasSubstr("parallel.pipeline_schedule 1f1b with parallel.virtual_pipeline_model_parallel_size 2"));
  EXPECT_THAT(
      error_of(recipe(), with({"parallel.zero_stage=2"}), 4),
      AllOf(HasSubstr("parallel.zero_stage = 2 with parallel.pipeline_model_parallel_size = 2"), HasSubstr("use 1")));
  EXPECT_THAT(error_of(recipe(), {"parallel.virtual_pipeline_model_parallel_size=2"}),
              HasSubstr("pipeline options are set but parallel.pipeline_model_parallel_size = 1"));
  EXPECT_THAT(error_of(recipe(), with({}), 3),
              HasSubstr("parallel.tensor_model_parallel_size = 1 x parallel.pipeline_model_parallel_size = 2 does not "
                        "divide the 3 launched rank(s)"));
}

TEST_F(TrainConfigTest, InconsistentModelAndScheduleAreRefused) {
  EXPECT_THAT(error_of(recipe(), {"model.num_attention_heads=5"}),
              AllOf(HasSubstr("hidden_size 768"), HasSubstr("num_attention_heads 5")));
  EXPECT_THAT(error_of(recipe(), {"scheduler.lr_warmup_iters=10"}), HasSubstr("scheduler.lr_warmup_iters 10"));
  EXPECT_THAT(error_of(recipe(), {"optimizer.min_lr=1.0"}), HasSubstr("optimizer.min_lr"));
  EXPECT_THAT(error_of(recipe(), {"model.preset=gpt3"}), HasSubstr("known presets"));
}

}  // namespace
}  // namespace tessera
