// `tessera autoconfig` end to end (launcher/autoconfig_command.h): the written recipe goes back
// through the trainer's own parser and validation (Recipe::load + train_config_from_recipe for
// the job's world size) and selects the layout the search ranked first; a recipe given as --model
// keeps its other keys; every layout the search can propose for a job passes the trainer's
// checks; post-training workloads print a table and write nothing; --measure trains the top
// layouts in child processes (one CPU rank here) and writes the fastest measured; bad input is one line.
#include "launcher/autoconfig_command.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "core/check.h"
#include "data/indexed_dataset_writer.h"
#include "launcher/recipe.h"
#include "launcher/train_config.h"

namespace tessera {
namespace {

class AutoconfigCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tessera_autoconfig_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    // train_config_from_recipe checks that the data files exist; it reads nothing from them.
    for (const char* suffix : {".bin", ".idx"}) std::ofstream(dir_ / (std::string("corpus") + suffix)) << "";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // The written recipe through the trainer's parser for `world` ranks, pointed at the test corpus, on CPU.
  TrainConfig validate(const std::string& yaml, int world) {
    const std::filesystem::path file = dir_ / "written.yaml";
    std::ofstream(file) << yaml;
    const Recipe recipe =
        Recipe::load(file.string(), {"data.data_path=[" + (dir_ / "corpus").string() + "]", "train.device=cpu"});
    LaunchContext launch;
    launch.world_size = world;
    return train_config_from_recipe(recipe, launch);
  }

  std::filesystem::path dir_;
};

TEST_F(AutoconfigCommandTest, PresetRecipeSelectsTheBestLayoutAndValidates) {
  AutoconfigCommandOptions o;
  o.model = "llama3-8b";
  o.gpus = 32;
  o.seq_len = 4096;
  o.global_batch = 128;
  const AutoconfigOutcome outcome = autoconfigure(o);
  ASSERT_FALSE(outcome.recipe_yaml.empty());
  const autoconfig::Candidate& best = outcome.result.ranked.front().candidate;
  const TrainConfig c = validate(outcome.recipe_yaml, 32);
  EXPECT_EQ(c.layout.tp, best.tp);
  EXPECT_EQ(c.layout.pp, best.pp);
  EXPECT_EQ(c.layout.dp, best.dp);
  EXPECT_EQ(c.pipeline.pp, best.pp);
  EXPECT_EQ(c.sequence_parallel, best.sequence_parallel);
  EXPECT_EQ(c.zero_stage, best.zero_stage);
  EXPECT_EQ(c.micro_batch_size, best.micro_batch_size);
  EXPECT_EQ(c.recompute, best.recompute == autoconfig::Recompute::Full);
  EXPECT_EQ(c.global_batch_size, 128);
  EXPECT_EQ(c.seq_length, 4096);
  EXPECT_EQ(c.model.name, "llama3-8b");
  EXPECT_NE(outcome.recipe_yaml.find("# Set data.data_path"), std::string::npos);
}

TEST_F(AutoconfigCommandTest, RecipeAsModelKeepsItsOtherKeys) {
  const std::filesystem::path recipe = dir_ / "mine.yaml";
  std::ofstream(recipe)
      << "model:\n  preset: llama3-8b\n  max_position_embeddings: 8192\ndata:\n  data_path: [elsewhere]\n"
         "  seq_length: 8192\noptimizer:\n  lr: 2.5e-4\nscheduler:\n  lr_warmup_iters: 2000\n"
         "train:\n  micro_batch_size: 1\n  global_batch_size: 1024\n  train_iters: 10000\n"
         "checkpoint:\n  save: checkpoints/mine\n";
  AutoconfigCommandOptions o;
  o.model = recipe.string();
  o.gpus = 64;
  o.global_batch = 256;
  const AutoconfigOutcome outcome = autoconfigure(o);
  const TrainConfig c = validate(outcome.recipe_yaml, 64);
  EXPECT_EQ(c.seq_length, 8192);  // the recipe's
  EXPECT_EQ(c.global_batch_size, 256);
  EXPECT_EQ(c.model.max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(c.adamw.lr, 2.5e-4);
  EXPECT_EQ(c.schedule.warmup_steps, 2000);
  EXPECT_EQ(c.save_dir, "checkpoints/mine");
  EXPECT_EQ(outcome.recipe_yaml.find("# Set data.data_path"), std::string::npos);
}

// Every layout the search may write, for a job where all axes vary, is one the trainer accepts.
TEST_F(AutoconfigCommandTest, TrainerAcceptsEveryEnumeratedLayout) {
  autoconfig::Job job;
  job.model = transformer_preset("llama3-1b");
  job.gpus = 8;
  job.seq_length = 2048;
  job.global_batch_size = 16;
  const std::string base = "model:\n  preset: llama3-1b\ndata:\n  data_path: [" + (dir_ / "corpus").string() +
                           "]\ntrain:\n  train_iters: 10\n  device: cpu\n";
  size_t checked = 0;
  for (const autoconfig::Candidate& candidate : autoconfig::enumerate_layouts(job)) {
    SCOPED_TRACE(candidate.describe());
    const Recipe recipe = Recipe::parse(base, "test", autoconfig::recipe_overrides(candidate, job));
    LaunchContext launch;
    launch.world_size = job.gpus;
    const TrainConfig c = train_config_from_recipe(recipe, launch);
    EXPECT_EQ(c.layout.dp, candidate.dp);
    EXPECT_EQ(c.grad_accumulation_steps(), candidate.num_microbatches(job));
    ++checked;
  }
  EXPECT_GT(checked, 100u);
}

TEST_F(AutoconfigCommandTest, PostTrainingWorkloadPrintsATableAndWritesNothing) {
  AutoconfigCommandOptions o;
  o.model = "llama3-8b";
  o.gpus = 8;
  o.global_batch = 64;
  o.workload = "dpo";
  const AutoconfigOutcome outcome = autoconfigure(o);
  EXPECT_TRUE(outcome.recipe_yaml.empty());
  EXPECT_NE(outcome.table.find("dpo llama3-8b on 8 x h100-80gb"), std::string::npos) << outcome.table;
}

// llama-tiny on CPU, one rank: the top 2 (micro batch and recomputation choices) each train 3
// steps through the real `tessera train`; both report a speed, the list is ranked by it, and the
// recipe written selects the measured winner.
TEST_F(AutoconfigCommandTest, MeasureTrainsTheTopLayoutsAndRanksByMeasuredSpeed) {
  const std::string corpus = (dir_ / "tokens").string();
  {
    IndexedDatasetWriter writer(corpus, IndexedDType::UInt16);
    std::mt19937 engine(7);
    for (int document = 0; document < 200; ++document) {
      std::vector<int32_t> tokens(8 + engine() % 33);
      for (int32_t& token : tokens) token = int32_t(engine() % 512);
      writer.add_document(tokens);
    }
    writer.finalize();
  }
  const std::filesystem::path recipe = dir_ / "tiny.yaml";
  std::ofstream(recipe) << "model:\n  preset: llama-tiny\ndata:\n  data_path: [" << corpus
                        << "]\n  split: \"90,10,0\"\n  seq_length: 16\ntrain:\n  micro_batch_size: 2\n"
                           "  global_batch_size: 4\n  train_iters: 100\n  device: cpu\n";
  AutoconfigCommandOptions o;
  o.model = recipe.string();
  o.gpus = 1;
  o.top = 2;
  o.measure = true;
  o.measure_steps = 3;
  o.tessera_executable = TESSERA_EXECUTABLE;
  const AutoconfigOutcome outcome = autoconfigure(o);
  ASSERT_EQ(outcome.measured.size(), 2u);
  for (const MeasuredLayout& m : outcome.measured) {
    EXPECT_GT(m.tokens_per_second, 0) << m.failure;
    EXPECT_GT(m.peak_memory_bytes, 0) << "the run's logged peak, set beside the memory model's";
  }
  EXPECT_GE(outcome.measured[0].tokens_per_second, outcome.measured[1].tokens_per_second);
  const TrainConfig c = validate(outcome.recipe_yaml, 1);
  EXPECT_EQ(c.micro_batch_size, outcome.measured[0].predicted.candidate.micro_batch_size);
  EXPECT_EQ(c.recompute, outcome.measured[0].predicted.candidate.recompute == autoconfig::Recompute::Full);
  EXPECT_NE(outcome.table.find("measured (ranked by measured tokens/s; peak memory per GPU)"), std::string::npos)
      << outcome.table;
  EXPECT_NE(outcome.table.find("meas GiB"), std::string::npos) << outcome.table;
}

TEST_F(AutoconfigCommandTest, BadInputIsOneLine) {
  auto error_of = [](const AutoconfigCommandOptions& o) {
    try {
      autoconfigure(o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  AutoconfigCommandOptions o;
  o.model = "llama3-9b";
  o.gpus = 8;
  o.global_batch = 64;
  EXPECT_NE(error_of(o).find("--model: unknown model preset 'llama3-9b'"), std::string::npos) << error_of(o);
  o.model = "llama3-8b";
  o.gpu = "h100-40gb";
  EXPECT_NE(error_of(o).find("unknown --gpu 'h100-40gb'"), std::string::npos) << error_of(o);
  o.gpu = "h100-80gb";
  o.global_batch = 0;
  EXPECT_NE(error_of(o).find("--global-batch is required with a preset"), std::string::npos) << error_of(o);
  o.global_batch = 64;
  o.workload = "rlhf";
  EXPECT_NE(error_of(o).find("unknown --workload 'rlhf'; choose pretrain, sft, lora, dpo or ppo"), std::string::npos)
      << error_of(o);
  o.workload = "pretrain";
  const std::filesystem::path uneven = dir_ / "uneven.yaml";
  std::ofstream(uneven) << "model:\n  preset: llama3-8b\nparallel:\n  pipeline_model_parallel_size: 2\n"
                           "  decoder_first_pipeline_num_layers: 10\ndata:\n  data_path: [x]\ntrain:\n"
                           "  micro_batch_size: 1\n  global_batch_size: 64\n  train_iters: 10\n";
  o.model = uneven.string();
  EXPECT_NE(error_of(o).find("uneven.yaml:5: parallel.decoder_first_pipeline_num_layers is set, but autoconfig "
                             "proposes even pipeline splits; remove it"),
            std::string::npos)
      << error_of(o);
  o.model = "llama3-8b";
  o.measure = true;
  EXPECT_NE(error_of(o).find("--measure trains each layout for a few steps and needs data"), std::string::npos)
      << error_of(o);
}

}  // namespace
}  // namespace tessera
