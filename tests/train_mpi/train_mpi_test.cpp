// `tessera train` as users launch it: the real executable on one process (an MPI singleton) and
// under `mpirun -np 4` on CPU, on a tiny Llama over a random-token corpus, f32.
//   - One process: metrics.jsonl equals, bit for bit, an in-process Trainer without process
//     groups (the single-rank path is today's).
//   - dp = 4, and tp = 2 x dp = 2 with sequence parallelism: every step's loss and gradient
//     norm, and the validation losses, within 1e-5 relative of the one-process run; only rank 0
//     logs (each step line once) and writes the run directory; data-parallel rank 0 saves the
//     checkpoint (tensor-parallel rank r into tp{r}-of-2/). Four ranks stopped after step 3 and
//     resumed from their checkpoint match as well; with tp = 2, sequence parallelism and dropout,
//     the resumed jobs equal the uninterrupted tp run bit for bit (each tp rank's own dropout
//     stream is checkpointed).
//   - ZeRO-1 and ZeRO-2 (parallel.zero_stage) on dp = 4, with buckets small enough that parameters
//     straddle the ranks' shards: the same 1e-5 match of the one-process run, and every dp rank
//     saves its own shard (dp{d}-of-4/). ZeRO-2 jobs of 3 steps resume bit for bit equal to the
//     uninterrupted ZeRO-2 run; resuming those shards on 2 ranks is refused in one line.
//   - ZeRO-3 (parallel.zero_stage 3, or parallel.fsdp) on dp = 4 and on tp = 2 x dp = 2 without
//     sequence parallelism: the same 1e-5 match of the one-process run; the memory report logged.
//     ZeRO-3 jobs of 3 steps (dp = 4; tp = 2 x dp = 2 with dropout) resume bit for bit equal to
//     the uninterrupted run; every dp rank's checkpoint holds the whole model; resuming the shards
//     on 2 ranks, or with zero_stage 2, is refused in one line.
//   - Pipelines (8 layers, tied embeddings): pp 2 (1F1B, GPipe), pp 2 x vpp 2, pp 4 (x vpp 2),
//     tp 2 x pp 2 x dp 2 and ZeRO-1 with pp 2 match their own one-process run; pp 2 jobs resume;
//     pp 2 x vpp 2 jobs with dropout resume bit for bit (each rank's checkpoint holds both chunks
//     and their streams), and resuming them with vpp 1 is refused in one line.
//   - Bad layouts (tp that does not divide the heads; a world that is not a multiple of tp):
//     non-zero exit, exactly one error line naming the recipe key, nothing in the run directory.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "data/data_test_util.h"
#include "data/indexed_dataset_writer.h"
#include "launcher/checkpoint.h"
#include "launcher/recipe.h"
#include "launcher/trainer.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::TemporaryFolder;

constexpr int kSteps = 6;

// 300 documents of 8..40 random token ids below llama-tiny's vocabulary of 512.
void write_corpus(const std::string& prefix) {
  IndexedDatasetWriter writer(prefix, IndexedDType::UInt16);
  std::mt19937 engine(7);
  for (int document = 0; document < 300; ++document) {
    std::vector<int32_t> tokens(8 + engine() % 33);
    for (int32_t& token : tokens) token = static_cast<int32_t>(engine() % 512);
    writer.add_document(tokens);
  }
  writer.finalize();
}

// `model_keys`: extra lines of the model section ("  num_layers: 8\n").
std::string recipe_text(const std::string& data_prefix, const std::string& model_keys = "") {
  return "model:\n  preset: llama-tiny\n" + model_keys + "data:\n  data_path: [" + data_prefix +
         "]\n  split: \"90,10,0\"\n  seq_length: 16\n  num_workers: 1\n"
         "optimizer:\n  lr: 3.0e-3\n  min_lr: 3.0e-4\n  weight_decay: 0.1\n  clip_grad: 1.0\n"
         "scheduler:\n  lr_warmup_iters: 2\n"
         "train:\n  micro_batch_size: 1\n  global_batch_size: 8\n  train_iters: " +
         std::to_string(kSteps) +
         "\n  eval_interval: 3\n  eval_iters: 1\n  precision: fp32\n  device: cpu\n  resume: none\n"
         "logging:\n  log_interval: 1\n";
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

struct Outcome {
  int status = -1;
  std::string out, err;
};

// Runs a shell command with stdout and stderr captured in files of `folder`.
Outcome run(const std::string& command, const TemporaryFolder& folder, const std::string& name) {
  std::string out = folder.file(name + ".stdout"), err = folder.file(name + ".stderr");
  int raw = std::system((command + " >" + out + " 2>" + err).c_str());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, read_file(out), read_file(err)};
}

std::string mpirun(int ranks) {
  return std::string(TESSERA_MPIEXEC) +
         " --oversubscribe --allow-run-as-root --bind-to none --mca btl self,vader --mca mpi_yield_when_idle 1 -np " +
         std::to_string(ranks) + " ";
}

std::string train_command(const std::string& recipe, const std::vector<std::string>& overrides) {
  std::string command = std::string(TESSERA_EXECUTABLE) + " train " + recipe;
  for (const std::string& o : overrides) command += " " + o;
  return command;
}

struct Metrics {
  std::map<int64_t, nlohmann::json> steps;
  std::map<int64_t, double> validation;
};

Metrics read_metrics(const std::string& run_dir) {
  Metrics metrics;
  std::ifstream in(fs::path(run_dir) / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    nlohmann::json record = nlohmann::json::parse(line);
    int64_t step = record.at("step").get<int64_t>();
    if (record.contains("validation_loss")) {
      metrics.validation[step] = record.at("validation_loss").get<double>();
    } else {
      metrics.steps[step] = record;
    }
  }
  return metrics;
}

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::vector<std::string> folder_names(const std::string& directory) {
  std::vector<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(directory))
    names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// The runs' every step (loss and gradient norm) and validation loss are equal, bit for bit.
void expect_bit_for_bit(const Metrics& got, const Metrics& expected) {
  ASSERT_EQ(got.steps.size(), size_t(kSteps));
  ASSERT_EQ(expected.steps.size(), size_t(kSteps));
  for (const auto& [step, record] : expected.steps) {
    EXPECT_EQ(got.steps.at(step).at("loss").get<double>(), record.at("loss").get<double>()) << "step " << step;
    EXPECT_EQ(got.steps.at(step).at("grad_norm").get<double>(), record.at("grad_norm").get<double>())
        << "step " << step;
  }
  EXPECT_EQ(got.validation, expected.validation);
}

// The one error line every refusing rank prints must contain `what`; no step ran.
void expect_refused(const Outcome& outcome, const std::string& what) {
  EXPECT_NE(outcome.status, 0);
  EXPECT_GE(count(outcome.err, "tessera: error"), 1) << outcome.err;
  for (size_t at = outcome.err.find("tessera: error"); at != std::string::npos;
       at = outcome.err.find("tessera: error", at + 1))
    EXPECT_THAT(outcome.err.substr(at, outcome.err.find('\n', at) - at), HasSubstr(what));
  EXPECT_EQ(count(outcome.out, "step     1/"), 0) << outcome.out;
}

void expect_close(double got, double expected, const std::string& what) {
  ASSERT_TRUE(std::isfinite(got)) << what;
  EXPECT_LE(std::abs(got - expected), 1e-5 * std::abs(expected)) << what << ": " << got << " vs " << expected;
}

class TrainMpi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    folder_ = new TemporaryFolder();
    write_corpus(folder_->file("corpus"));
    std::ofstream(recipe()) << recipe_text(folder_->file("corpus"));
    Outcome one = run(train_command(recipe(), {"logging.run_dir=" + folder_->file("one")}), *folder_, "one");
    ASSERT_EQ(one.status, 0) << one.err;
    one_rank_ = new Metrics(read_metrics(folder_->file("one")));
  }
  static void TearDownTestSuite() {
    delete one_rank_;
    delete folder_;
  }

  static std::string recipe() { return folder_->file("recipe.yaml"); }

  // Runs `ranks` ranks with `overrides` as job `job` (which trains steps first..last) into the
  // run directory `name`; checks the logging and files every run must show.
  static Metrics run_ranks(int ranks, const std::string& name, std::vector<std::string> overrides, int first = 1,
                           int last = kSteps, const std::string& job = "", std::vector<std::string> extra_files = {}) {
    std::string run_dir = folder_->file(name);
    overrides.push_back("logging.run_dir=" + run_dir);
    Outcome outcome = run(mpirun(ranks) + train_command(recipe(), overrides), *folder_, name + job);
    EXPECT_EQ(outcome.status, 0) << outcome.err;
    EXPECT_EQ(count(outcome.out, "resolved configuration"), 1) << "only rank 0 logs";
    for (int step = 1; step <= kSteps; ++step) {
      int expected = step >= first && step <= last ? 1 : 0;
      EXPECT_EQ(count(outcome.out, "step     " + std::to_string(step) + "/"), expected) << outcome.out;
    }
    std::vector<std::string> files;
    for (const fs::directory_entry& file : fs::directory_iterator(run_dir))
      files.push_back(file.path().filename().string());
    std::sort(files.begin(), files.end());
    // The watchdog's dump folder exists from the start (a folder it cannot create fails the run
    // before step 1) and stays empty when nothing hung.
    std::vector<std::string> expected_files = {"config.yaml", "flight_recorder", "metrics.jsonl"};
    expected_files.insert(expected_files.end(), extra_files.begin(), extra_files.end());
    std::sort(expected_files.begin(), expected_files.end());
    EXPECT_EQ(files, expected_files) << "only rank 0 writes";
    last_output_ = outcome.out;
    EXPECT_TRUE(fs::is_empty(fs::path(run_dir) / "flight_recorder")) << "a healthy run dumps nothing";
    EXPECT_NE(outcome.out.find("preflight: group 'world'"), std::string::npos) << outcome.out;
    return read_metrics(run_dir);
  }

  static void expect_matches_one_rank(const Metrics& got) {
    ASSERT_EQ(got.steps.size(), size_t(kSteps));
    ASSERT_EQ(one_rank_->steps.size(), size_t(kSteps));
    for (const auto& [step, expected] : one_rank_->steps) {
      const nlohmann::json& record = got.steps.at(step);
      expect_close(record.at("loss"), expected.at("loss"), "loss at step " + std::to_string(step));
      expect_close(record.at("grad_norm"), expected.at("grad_norm"), "grad norm at step " + std::to_string(step));
      EXPECT_EQ(record.at("lr").get<double>(), expected.at("lr").get<double>()) << "step " << step;
    }
    ASSERT_EQ(got.validation.size(), one_rank_->validation.size());
    ASSERT_EQ(got.validation.size(), 2u);  // steps 3 and 6
    for (const auto& [step, expected] : one_rank_->validation)
      expect_close(got.validation.at(step), expected, "validation loss at step " + std::to_string(step));
    std::printf("  losses %.6f .. %.6f match the one-process run\n", got.steps.begin()->second.at("loss").get<double>(),
                got.steps.rbegin()->second.at("loss").get<double>());
  }

  static TemporaryFolder* folder_;
  static Metrics* one_rank_;
  static std::string last_output_;  // stdout of the last run_ranks
};

TemporaryFolder* TrainMpi::folder_ = nullptr;
Metrics* TrainMpi::one_rank_ = nullptr;
std::string TrainMpi::last_output_;

TEST_F(TrainMpi, OneProcessEqualsTheInProcessTrainerBitForBit) {
  Recipe recipe = Recipe::load(TrainMpi::recipe(), {"logging.run_dir=" + folder_->file("in_process")});
  TrainResult result = Trainer(train_config_from_recipe(recipe), [](const std::string&) {}).run();
  ASSERT_EQ(result.steps.size(), size_t(kSteps));
  for (const StepMetrics& m : result.steps) {
    EXPECT_EQ(one_rank_->steps.at(m.step).at("loss").get<double>(), m.loss) << "step " << m.step;
    EXPECT_EQ(one_rank_->steps.at(m.step).at("grad_norm").get<double>(), m.grad_norm) << "step " << m.step;
  }
  ASSERT_EQ(result.validation_losses.size(), one_rank_->validation.size());
  for (const auto& [step, loss] : result.validation_losses) EXPECT_EQ(one_rank_->validation.at(step), loss);
}

TEST_F(TrainMpi, FourDataParallelRanksMatchOneProcess) {
  std::string checkpoints = folder_->file("dp4_checkpoints");
  Metrics dp4 = run_ranks(4, "dp4", {"checkpoint.save=" + checkpoints, "checkpoint.save_interval=100"});
  expect_matches_one_rank(dp4);
  std::vector<std::string> saved;
  for (const fs::directory_entry& file : fs::directory_iterator(checkpoints))
    saved.push_back(file.path().filename().string());
  EXPECT_EQ(saved, std::vector<std::string>{"iter_0000006.h5"}) << "data-parallel rank 0 saves, once";
}

TEST_F(TrainMpi, FourDataParallelRanksStopAndResumeWhereTheyLeftOff) {
  // Two jobs of 3 steps: the second resumes from the checkpoint the first saved at step 3, and
  // the run directory's metrics (appended by both jobs) match the one-process run.
  std::vector<std::string> job = {"checkpoint.save=" + folder_->file("jobs_checkpoints"), "train.resume=auto",
                                  "train.exit_interval=3"};
  run_ranks(4, "jobs", job, 1, 3, "_first");
  Metrics resumed = run_ranks(4, "jobs", job, 4, 6, "_second");
  expect_matches_one_rank(resumed);
}

TEST_F(TrainMpi, TensorTimesDataParallelWithSequenceParallelismMatchesOneProcess) {
  std::string checkpoints = folder_->file("tp2dp2_checkpoints");
  Metrics tp2dp2 = run_ranks(4, "tp2dp2",
                             {"parallel.tensor_model_parallel_size=2", "parallel.sequence_parallel=true",
                              "checkpoint.save=" + checkpoints, "checkpoint.save_interval=100"});
  expect_matches_one_rank(tp2dp2);
  for (const char* shard : {"tp0-of-2", "tp1-of-2"})
    EXPECT_TRUE(fs::exists(fs::path(checkpoints) / shard / "iter_0000006.h5")) << shard;
}

TEST_F(TrainMpi, TensorParallelJobsWithDropoutResumeBitForBit) {
  // With sequence parallelism each tp rank draws hidden dropout from its own stream; the
  // checkpoint keeps that stream, so jobs of 3 steps give exactly the uninterrupted run's losses.
  std::vector<std::string> layout = {"parallel.tensor_model_parallel_size=2", "parallel.sequence_parallel=true",
                                     "model.hidden_dropout=0.1"};
  Metrics uninterrupted = run_ranks(4, "tp_dropout", layout);
  std::vector<std::string> job = layout;
  for (const char* o : {"train.resume=auto", "train.exit_interval=3"}) job.push_back(o);
  job.push_back("checkpoint.save=" + folder_->file("tp_dropout_checkpoints"));
  run_ranks(4, "tp_dropout_jobs", job, 1, 3, "_first");
  Metrics resumed = run_ranks(4, "tp_dropout_jobs", job, 4, 6, "_second");
  ASSERT_EQ(resumed.steps.size(), size_t(kSteps));
  for (const auto& [step, expected] : uninterrupted.steps) {
    EXPECT_EQ(resumed.steps.at(step).at("loss").get<double>(), expected.at("loss").get<double>()) << "step " << step;
    EXPECT_EQ(resumed.steps.at(step).at("grad_norm").get<double>(), expected.at("grad_norm").get<double>())
        << "step " << step;
  }
  EXPECT_NE(uninterrupted.steps.at(kSteps).at("loss").get<double>(),
            one_rank_->steps.at(kSteps).at("loss").get<double>())
      << "dropout must change the losses, or this test checks nothing about the dropout stream";
}

TEST_F(TrainMpi, ZeroStages1And2MatchOneProcessAndSaveOneShardPerRank) {
  for (int stage : {1, 2}) {
    SCOPED_TRACE("zero_stage " + std::to_string(stage));
    std::string name = "zero" + std::to_string(stage), checkpoints = folder_->file(name + "_checkpoints");
    Metrics zero = run_ranks(4, name,
                             {"parallel.zero_stage=" + std::to_string(stage), "parallel.ddp_bucket_size_mb=0.02",
                              "checkpoint.save=" + checkpoints, "checkpoint.save_interval=100"});
    expect_matches_one_rank(zero);
    for (const char* shard : {"dp0-of-4", "dp1-of-4", "dp2-of-4", "dp3-of-4"})
      EXPECT_TRUE(fs::exists(fs::path(checkpoints) / shard / "iter_0000006.h5")) << shard;
  }
}

TEST_F(TrainMpi, ZeroJobsResumeBitForBitAndRefuseAnotherDataParallelSize) {
  std::vector<std::string> zero = {"parallel.zero_stage=2", "parallel.ddp_bucket_size_mb=0.02"};
  Metrics uninterrupted = run_ranks(4, "zero_whole", zero);
  std::vector<std::string> job = zero;
  for (const char* o : {"train.resume=auto", "train.exit_interval=3"}) job.push_back(o);
  job.push_back("checkpoint.save=" + folder_->file("zero_jobs_checkpoints"));
  run_ranks(4, "zero_jobs", job, 1, 3, "_first");
  Metrics resumed = run_ranks(4, "zero_jobs", job, 4, 6, "_second");
  ASSERT_EQ(resumed.steps.size(), size_t(kSteps));
  for (const auto& [step, expected] : uninterrupted.steps) {
    EXPECT_EQ(resumed.steps.at(step).at("loss").get<double>(), expected.at("loss").get<double>()) << "step " << step;
    EXPECT_EQ(resumed.steps.at(step).at("grad_norm").get<double>(), expected.at("grad_norm").get<double>())
        << "step " << step;
  }
  job.push_back("logging.run_dir=" + folder_->file("zero_dp2"));
  Outcome two = run(mpirun(2) + train_command(recipe(), job), *folder_, "zero_dp2");
  // Every rank finds the mismatch in its own check (before any step), and says the same line.
  EXPECT_NE(two.status, 0);
  EXPECT_GE(count(two.err, "tessera: error"), 1) << two.err;
  for (size_t at = two.err.find("tessera: error"); at != std::string::npos; at = two.err.find("tessera: error", at + 1))
    EXPECT_THAT(two.err.substr(at, two.err.find('\n', at) - at),
                HasSubstr("holds ZeRO optimizer shards of a run with data-parallel size 4 ("));
  EXPECT_THAT(two.err, HasSubstr("but this run has 2; launch 4 data-parallel ranks to resume"));
  EXPECT_EQ(count(two.out, "step     1/"), 0) << two.out;
}

// ZeRO-3 (FSDP): parameters, gradients and optimizer state sharded over dp; every micro-batch
// gathers each layer twice and reduce-scatters its gradients. Compared with the one-process run
// like the other layouts; the memory report is logged once, by rank 0.
TEST_F(TrainMpi, ZeroStage3OnFourDataParallelRanksMatchesOneProcess) {
  Metrics zero3 = run_ranks(4, "zero3", {"parallel.zero_stage=3"});
  EXPECT_EQ(count(last_output_, "ZeRO-3 (FSDP) over 4 data-parallel rank(s), per rank: parameters "), 1)
      << last_output_;
  EXPECT_THAT(last_output_, HasSubstr("4 unit(s), prefetch 1"));  // embedding, 2 layers, head
  expect_matches_one_rank(zero3);
}

TEST_F(TrainMpi, FsdpWithTensorParallelismMatchesOneProcess) {
  // parallel.fsdp is zero_stage 3's other name; a deeper prefetch changes only the overlap.
  Metrics fsdp = run_ranks(4, "fsdp_tp2dp2",
                           {"parallel.fsdp=true", "parallel.fsdp_prefetch=2", "parallel.tensor_model_parallel_size=2"});
  EXPECT_THAT(last_output_, HasSubstr("ZeRO-3 (FSDP) over 2 data-parallel rank(s)"));
  EXPECT_THAT(last_output_, HasSubstr("prefetch 2"));
  expect_matches_one_rank(fsdp);
}

// ZeRO-3 checkpoints: every dp rank saves the gathered weights and its optimizer shards; jobs of
// 3 steps resume into the shards and give exactly the uninterrupted run's losses. Resuming on
// another dp size, or with ZeRO-2 from ZeRO-3 shards, is refused in one line before any step.
TEST_F(TrainMpi, ZeroStage3JobsResumeBitForBitAndRefuseAnotherLayout) {
  Metrics uninterrupted = run_ranks(4, "zero3_whole", {"parallel.zero_stage=3"});
  std::string checkpoints = folder_->file("zero3_jobs_checkpoints");
  std::vector<std::string> job = {"parallel.zero_stage=3", "train.resume=auto", "train.exit_interval=3",
                                  "checkpoint.save=" + checkpoints};
  run_ranks(4, "zero3_jobs", job, 1, 3, "_first");
  EXPECT_EQ(folder_names(checkpoints), (std::vector<std::string>{"dp0-of-4", "dp1-of-4", "dp2-of-4", "dp3-of-4"}));
  Metrics resumed = run_ranks(4, "zero3_jobs", job, 4, 6, "_second");
  EXPECT_THAT(last_output_, HasSubstr("resumed from "));
  expect_bit_for_bit(resumed, uninterrupted);
  // Every rank saved the whole model (the gathered weights), not its shard.
  TrainingCheckpoint saved = read_checkpoint_file(checkpoints + "/dp3-of-4/iter_0000006.h5");
  EXPECT_EQ(saved.model.at("embedding.word_embeddings.weight").value.shape(), (Shape{512, 64}));
  EXPECT_EQ(saved.optimizer.steps_taken, kSteps);

  std::vector<std::string> dp2 = job;
  dp2.push_back("logging.run_dir=" + folder_->file("zero3_dp2"));
  expect_refused(run(mpirun(2) + train_command(recipe(), dp2), *folder_, "zero3_dp2"),
                 "holds ZeRO optimizer shards of a run with data-parallel size 4 (");
  std::vector<std::string> stage2 = job;
  stage2[0] = "parallel.zero_stage=2";
  stage2.push_back("logging.run_dir=" + folder_->file("zero3_as_zero2"));
  expect_refused(run(mpirun(4) + train_command(recipe(), stage2), *folder_, "zero3_as_zero2"),
                 "holds the optimizer shards of a run with parallel.zero_stage = 3 but this run has 2");
}

TEST_F(TrainMpi, FsdpWithTensorParallelismAndDropoutJobsResumeBitForBit) {
  // tp 2 x dp 2: each tp rank's dp ranks save into tp{r}-of-2/dp{d}-of-2/, with the tp rank's
  // model-parallel stream; dropout makes the streams matter.
  std::vector<std::string> layout = {"parallel.fsdp=true", "parallel.tensor_model_parallel_size=2",
                                     "model.hidden_dropout=0.1"};
  Metrics uninterrupted = run_ranks(4, "fsdp_tp_whole", layout);
  std::string checkpoints = folder_->file("fsdp_tp_checkpoints");
  std::vector<std::string> job = layout;
  for (const std::string& o :
       {std::string("train.resume=auto"), std::string("train.exit_interval=3"), "checkpoint.save=" + checkpoints})
    job.push_back(o);
  run_ranks(4, "fsdp_tp_jobs", job, 1, 3, "_first");
  for (const char* shard : {"tp0-of-2/dp0-of-2", "tp0-of-2/dp1-of-2", "tp1-of-2/dp0-of-2", "tp1-of-2/dp1-of-2"})
    EXPECT_TRUE(fs::exists(fs::path(checkpoints) / shard / "iter_0000003.h5")) << shard;
  Metrics resumed = run_ranks(4, "fsdp_tp_jobs", job, 4, 6, "_second");
  expect_bit_for_bit(resumed, uninterrupted);
  EXPECT_NE(uninterrupted.steps.at(kSteps).at("loss").get<double>(),
            one_rank_->steps.at(kSteps).at("loss").get<double>())
      << "dropout must change the losses, or this test checks nothing about the dropout streams";
}

// Pipeline parallelism: an 8-layer llama-tiny with tied embeddings (so the first and the last
// stage hold the two copies of the word embeddings and sum their gradients), compared with its
// own one-process run. Every layout gives that run's losses, gradient norms and validation
// losses within 1e-5 relative.
class TrainPipeline : public TrainMpi {
 protected:
  static void SetUpTestSuite() {
    folder_ = new TemporaryFolder();
    write_corpus(folder_->file("corpus"));
    std::string text =
        recipe_text(folder_->file("corpus"), "  num_layers: 8\n  untie_embeddings_and_output_weights: false\n");
    // A smaller peak learning rate than the other suites': over 8 layers, Adam's first steps turn
    // the layouts' reduction-order rounding (1e-7 at step 2) into 1e-5 grad-norm differences
    // by step 5 at 3e-3 (tp2 x pp2 x dp2).
    text.replace(text.find("lr: 3.0e-3"), 10, "lr: 1.0e-3");
    std::ofstream(recipe()) << text;
    Outcome one = run(train_command(recipe(), {"logging.run_dir=" + folder_->file("one")}), *folder_, "one");
    ASSERT_EQ(one.status, 0) << one.err;
    one_rank_ = new Metrics(read_metrics(folder_->file("one")));
  }
};

TEST_F(TrainPipeline, TwoStagesWith1F1BAndGPipeMatchOneProcessAndSaveOnePiecePerStage) {
  std::string checkpoints = folder_->file("pp2_checkpoints");
  Metrics pp2 = run_ranks(
      2, "pp2",
      {"parallel.pipeline_model_parallel_size=2", "checkpoint.save=" + checkpoints, "checkpoint.save_interval=100"});
  EXPECT_THAT(last_output_, HasSubstr("pipeline: 1f1b schedule, 8 micro-batches per step"));
  expect_matches_one_rank(pp2);
  EXPECT_EQ(folder_names(checkpoints), (std::vector<std::string>{"tp0-pp0-of-1x2", "tp0-pp1-of-1x2"}));
  for (const char* piece : {"tp0-pp0-of-1x2", "tp0-pp1-of-1x2"})
    EXPECT_TRUE(fs::exists(fs::path(checkpoints) / piece / "iter_0000006.h5")) << piece;
  Metrics gpipe =
      run_ranks(2, "pp2_gpipe", {"parallel.pipeline_model_parallel_size=2", "parallel.pipeline_schedule=gpipe"});
  EXPECT_THAT(last_output_, HasSubstr("pipeline: gpipe schedule"));
  expect_matches_one_rank(gpipe);
}

TEST_F(TrainPipeline, TwoStageJobsResumeWhereTheyLeftOffAndRefuseAnotherPipelineSize) {
  std::vector<std::string> job = {"parallel.pipeline_model_parallel_size=2", "train.resume=auto",
                                  "train.exit_interval=3", "checkpoint.save=" + folder_->file("pp_jobs_checkpoints")};
  run_ranks(2, "pp_jobs", job, 1, 3, "_first");
  Metrics resumed = run_ranks(2, "pp_jobs", job, 4, 6, "_second");
  expect_matches_one_rank(resumed);
  job[0] = "parallel.pipeline_model_parallel_size=1";
  job.push_back("logging.run_dir=" + folder_->file("pp_jobs_pp1"));
  Outcome other = run(mpirun(2) + train_command(recipe(), job), *folder_, "pp_jobs_pp1");
  EXPECT_NE(other.status, 0);
  EXPECT_THAT(other.err, HasSubstr("holds checkpoint pieces of a run with parallel.tensor_model_parallel_size = 1 and "
                                   "parallel.pipeline_model_parallel_size = 2"));
  EXPECT_EQ(count(other.out, "step     1/"), 0) << other.out;
}

TEST_F(TrainPipeline, TwoStagesInterleavedWithTwoChunksMatchOneProcess) {
  Metrics interleaved = run_ranks(
      2, "pp2_vpp2", {"parallel.pipeline_model_parallel_size=2", "parallel.virtual_pipeline_model_parallel_size=2"});
  EXPECT_THAT(last_output_, HasSubstr("pipeline: interleaved_1f1b schedule, 8 micro-batches per step"));
  expect_matches_one_rank(interleaved);
}

// Interleaved: each pp rank's checkpoint holds both its chunks (layers 0-1 and 4-5 on stage 0)
// and each chunk's dropout stream; jobs of 3 steps give exactly the uninterrupted run's losses.
// Resuming the pieces without interleaving is refused in one line.
TEST_F(TrainPipeline, TwoStagesInterleavedJobsWithDropoutResumeBitForBit) {
  std::vector<std::string> layout = {"parallel.pipeline_model_parallel_size=2",
                                     "parallel.virtual_pipeline_model_parallel_size=2", "model.hidden_dropout=0.1"};
  Metrics uninterrupted = run_ranks(2, "vpp_whole", layout);
  std::string checkpoints = folder_->file("vpp_jobs_checkpoints");
  std::vector<std::string> job = layout;
  for (const std::string& o :
       {std::string("train.resume=auto"), std::string("train.exit_interval=3"), "checkpoint.save=" + checkpoints})
    job.push_back(o);
  run_ranks(2, "vpp_jobs", job, 1, 3, "_first");
  TrainingCheckpoint stage0 = read_checkpoint_file(checkpoints + "/tp0-pp0-of-1x2/iter_0000003.h5");
  for (const char* name : {"embedding.word_embeddings.weight", "decoder.layers.1.mlp.linear_fc1.weight",
                           "decoder.layers.4.mlp.linear_fc1.weight", "decoder.layers.5.mlp.linear_fc1.weight"}) {
    EXPECT_EQ(stage0.model.count(name), 1u) << name;
    EXPECT_EQ(stage0.optimizer.exp_avg.count(name), 1u) << name;
  }
  EXPECT_EQ(stage0.model.count("decoder.layers.2.mlp.linear_fc1.weight"), 0u) << "stage 1's layer";
  EXPECT_EQ(stage0.chunk_dropout_rngs.size(), 1u) << "chunk 1's stream";
  Metrics resumed = run_ranks(2, "vpp_jobs", job, 4, 6, "_second");
  expect_bit_for_bit(resumed, uninterrupted);
  EXPECT_NE(uninterrupted.steps.at(kSteps).at("loss").get<double>(),
            one_rank_->steps.at(kSteps).at("loss").get<double>())
      << "dropout must change the losses, or this test checks nothing about the chunks' streams";

  std::vector<std::string> plain = job;
  plain.erase(plain.begin() + 1);  // vpp 1 on the same pp 2 and directory
  plain.push_back("logging.run_dir=" + folder_->file("vpp_as_plain"));
  expect_refused(run(mpirun(2) + train_command(recipe(), plain), *folder_, "vpp_as_plain"),
                 "holds 2 model chunk(s) of a pipeline rank but this rank has 1; resume with the "
                 "parallel.virtual_pipeline_model_parallel_size it was saved with");
}

TEST_F(TrainPipeline, FourStagesWith1F1BMatchOneProcess) {
  expect_matches_one_rank(run_ranks(4, "pp4", {"parallel.pipeline_model_parallel_size=4"}));
}

TEST_F(TrainPipeline, FourStagesInterleavedMatchOneProcessAndTraceTheFirstStep) {
  Metrics interleaved = run_ranks(4, "pp4_vpp2",
                                  {"parallel.pipeline_model_parallel_size=4",
                                   "parallel.virtual_pipeline_model_parallel_size=2", "logging.pipeline_trace=true"},
                                  1, kSteps, "", {"pipeline_trace.json"});
  expect_matches_one_rank(interleaved);
  EXPECT_THAT(last_output_, HasSubstr("analytic for equal-cost stages"));
  EXPECT_EQ(count(last_output_, "pipeline trace of step"), 1) << "one traced step, logged once";
  // The trace holds every stage's schedule: 8 micro-batches x 2 chunks, a forward and a backward each.
  std::ifstream in(fs::path(folder_->file("pp4_vpp2")) / "pipeline_trace.json");
  nlohmann::json trace = nlohmann::json::parse(in);
  std::map<int, int> computes;
  for (const nlohmann::json& event : trace.at("traceEvents")) {
    if (event.at("ph") != "X") continue;
    std::string category = event.at("cat");
    if (category == "forward" || category == "backward") ++computes[event.at("pid").get<int>()];
  }
  EXPECT_EQ(computes, (std::map<int, int>{{0, 32}, {1, 32}, {2, 32}, {3, 32}}));
}

TEST_F(TrainPipeline, TensorTimesPipelineTimesDataParallelWithSequenceParallelismOnEightRanksMatchesOneProcess) {
  Metrics three_d = run_ranks(8, "tp2pp2dp2",
                              {"parallel.tensor_model_parallel_size=2", "parallel.pipeline_model_parallel_size=2",
                               "parallel.sequence_parallel=true"});
  EXPECT_THAT(last_output_, HasSubstr("(layout: tp 2 x pp 2 x dp 2)"));
  expect_matches_one_rank(three_d);
}

TEST_F(TrainPipeline, ZeroStage1WithTwoStagesMatchesOneProcessAndSavesOneShardPerRank) {
  std::string checkpoints = folder_->file("zero_pp2_checkpoints");
  Metrics zero =
      run_ranks(4, "zero_pp2",
                {"parallel.pipeline_model_parallel_size=2", "parallel.zero_stage=1", "parallel.ddp_bucket_size_mb=0.02",
                 "checkpoint.save=" + checkpoints, "checkpoint.save_interval=100"});
  expect_matches_one_rank(zero);
  for (const char* piece : {"tp0-pp0-of-1x2", "tp0-pp1-of-1x2"})
    for (const char* shard : {"dp0-of-2", "dp1-of-2"})
      EXPECT_TRUE(fs::exists(fs::path(checkpoints) / piece / shard / "iter_0000006.h5")) << piece << "/" << shard;
}

class BadLayout : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    folder_ = new TemporaryFolder();
    write_corpus(folder_->file("corpus"));
    std::ofstream(recipe()) << recipe_text(folder_->file("corpus"));
  }
  static void TearDownTestSuite() { delete folder_; }
  static std::string recipe() { return folder_->file("recipe.yaml"); }

  // Runs 4 ranks that must refuse the layout; returns the one error line.
  static std::string refused(const std::string& name, const std::vector<std::string>& overrides) {
    std::vector<std::string> all = overrides;
    all.push_back("logging.run_dir=" + folder_->file(name));
    Outcome outcome = run(mpirun(4) + train_command(recipe(), all), *folder_, name);
    EXPECT_NE(outcome.status, 0);
    EXPECT_EQ(count(outcome.err, "tessera: error"), 1) << outcome.err;
    EXPECT_EQ(count(outcome.out, "step "), 0) << outcome.out;
    EXPECT_FALSE(fs::exists(folder_->file(name))) << "the run directory was created";
    size_t at = outcome.err.find("tessera: error");
    return at == std::string::npos ? outcome.err : outcome.err.substr(at, outcome.err.find('\n', at) - at);
  }

  static TemporaryFolder* folder_;
};

TemporaryFolder* BadLayout::folder_ = nullptr;

TEST_F(BadLayout, TensorParallelSizeThatDoesNotDivideTheHeadsIsRefused) {
  std::string error = refused(
      "heads", {"parallel.tensor_model_parallel_size=4", "model.num_attention_heads=2", "model.num_query_groups=2"});
  EXPECT_THAT(error, HasSubstr("parallel.tensor_model_parallel_size = 4"));
  EXPECT_THAT(error, HasSubstr("does not divide the model's 2 attention heads"));
}

TEST_F(BadLayout, WorldThatIsNotAMultipleOfTheModelParallelSizeIsRefused) {
  std::string error = refused("world", {"parallel.tensor_model_parallel_size=3"});
  EXPECT_THAT(error, HasSubstr("parallel.tensor_model_parallel_size = 3 does not divide the 4 launched rank(s)"));
}

TEST_F(BadLayout, LayersThatNoPipelineLayoutCanPlaceAreRefused) {
  // llama-tiny's 2 layers on 4 stages.
  std::string error = refused("pp_layers", {"parallel.pipeline_model_parallel_size=4"});
  EXPECT_THAT(error, HasSubstr("parallel.pipeline_model_parallel_size: "));
  EXPECT_THAT(error, HasSubstr("num_layers 2 is not divisible by pipeline_model_parallel_size 4"));
}

TEST_F(BadLayout, LayoutStringThatDoesNotCoverEveryLayerIsRefused) {
  std::string error = refused(
      "pp_string", {"parallel.pipeline_model_parallel_size=2", "'parallel.pipeline_model_parallel_layout=Et|L'"});
  EXPECT_THAT(error, HasSubstr("parallel.pipeline_model_parallel_layout: "));
  EXPECT_THAT(error, HasSubstr("places 1 transformer layers (t) but num_layers is 2"));
}

TEST_F(BadLayout, InterleavingWithFewerMicroBatchesThanStagesIsRefused) {
  // 2 micro-batches (global batch 2, micro-batch 1, dp 1) on 4 stages x 2 chunks.
  std::string error = refused(
      "pp_microbatches", {"parallel.pipeline_model_parallel_size=4", "parallel.virtual_pipeline_model_parallel_size=2",
                          "model.num_layers=8", "train.global_batch_size=2"});
  EXPECT_THAT(error, HasSubstr("parallel.pipeline_schedule interleaved_1f1b with "
                               "parallel.virtual_pipeline_model_parallel_size 2 and 2 micro-batches"));
}

}  // namespace
}  // namespace tessera
