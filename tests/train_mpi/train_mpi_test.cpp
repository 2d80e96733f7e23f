// `tessera train` as users launch it: the real executable on one process (an MPI singleton) and
// under `mpirun -np 4` on CPU, on a tiny Llama over a random-token corpus, f32.
//   - One process: metrics.jsonl equals, bit for bit, an in-process Trainer without process
//     groups (the single-rank path is today's).
//   - dp = 4, and tp = 2 x dp = 2 with sequence parallelism: every step's loss and gradient
//     norm, and the validation losses, within 1e-5 relative of the one-process run; only rank 0
//     logs (each step line once) and writes the run directory; data-parallel rank 0 writes the
//     model's pieces (tensor-parallel rank r its shard). Four ranks stopped after step 3 and
//     resumed from their checkpoint match as well; with tp = 2, sequence parallelism and dropout,
//     the resumed jobs equal the uninterrupted tp run bit for bit (each tp rank's own dropout
//     stream is checkpointed).
//   - ZeRO-1 and ZeRO-2 (parallel.zero_stage) on dp = 4, with buckets small enough that parameters
//     straddle the ranks' shards: the same 1e-5 match of the one-process run, and every dp rank
//     writes its own optimizer slices. ZeRO-2 jobs of 3 steps resume bit for bit equal to the
//     uninterrupted ZeRO-2 run; those slices resume on 2 ranks too (1e-5 of the one-process run).
//   - ZeRO-3 (parallel.zero_stage 3, or parallel.fsdp) on dp = 4 and on tp = 2 x dp = 2 without
//     sequence parallelism: the same 1e-5 match of the one-process run; the memory report logged.
//     ZeRO-3 jobs of 3 steps (dp = 4; tp = 2 x dp = 2 with dropout) resume bit for bit equal to
//     the uninterrupted run; the checkpoint holds the whole model (gathered, written once); it
//     resumes on 2 ranks and with zero_stage 2 as well (1e-5 of the one-process run).
//   - Pipelines (8 layers, tied embeddings): pp 2 (1F1B, GPipe), pp 2 x vpp 2, pp 4 (x vpp 2),
//     tp 2 x pp 2 x dp 2 and ZeRO-1 with pp 2 match their own one-process run; pp 2 jobs resume,
//     also with pp 1; pp 2 x vpp 2 jobs with dropout resume bit for bit (each rank writes both
//     chunks' pieces and streams), and resume with vpp 1 too (1e-5 of the one-process run).
// (Resharding into any layout: checkpoint_reshard_test.cpp; faults: checkpoint_fault_test.cpp.)
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
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "data/data_test_util.h"
#include "support/cli_runs.h"
#include "launcher/distributed_checkpoint.h"
#include "launcher/recipe.h"
#include "launcher/trainer.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::Outcome;
using testing::TemporaryFolder;
using testing::write_random_corpus;

constexpr int kSteps = 6;

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

// Runs a shell command with stdout and stderr captured in files of `folder`.
Outcome run(const std::string& command, const TemporaryFolder& folder, const std::string& name) {
  return testing::run(command, folder.file(""), name);
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

// The rank files holding the pieces of tensors whose name starts with `prefix`.
std::set<std::string> files_holding(const std::string& checkpoint, const std::string& prefix) {
  std::set<std::string> files;
  CheckpointReader reader(checkpoint);
  for (const auto& [name, tensor] : reader.metadata().tensors) {
    if (!name.starts_with(prefix)) continue;
    for (const PieceRecord& piece : tensor.pieces) files.insert(piece.file);
  }
  return files;
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

void expect_close(double got, double expected, const std::string& what) {
  ASSERT_TRUE(std::isfinite(got)) << what;
  EXPECT_LE(std::abs(got - expected), 1e-5 * std::abs(expected)) << what << ": " << got << " vs " << expected;
}

class TrainMpi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    folder_ = new TemporaryFolder();
    write_random_corpus(folder_->file("corpus"));
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

  // `ranks` ranks resume a step-3 checkpoint (given in `overrides`) for steps 4..6: each step's
  // loss and gradient norm within 1e-5 of the one-process run.
  static void expect_resumes_like_one_rank(int ranks, const std::string& name, std::vector<std::string> overrides) {
    overrides.push_back("logging.run_dir=" + folder_->file(name));
    Outcome outcome = run(mpirun(ranks) + train_command(recipe(), overrides), *folder_, name);
    ASSERT_EQ(outcome.status, 0) << outcome.err;
    EXPECT_THAT(outcome.out, HasSubstr("resumed from "));
    Metrics got = read_metrics(folder_->file(name));
    ASSERT_EQ(got.steps.size(), 3u);
    for (const auto& [step, record] : got.steps) {
      const nlohmann::json& expected = one_rank_->steps.at(step);
      expect_close(record.at("loss"), expected.at("loss"), name + ": loss at step " + std::to_string(step));
      expect_close(record.at("grad_norm"), expected.at("grad_norm"), name + ": grad norm at step " + std::to_string(step));
    }
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
  EXPECT_EQ(folder_names(checkpoints), std::vector<std::string>{"iter_0000006"}) << "saved once";
  EXPECT_EQ(files_holding(checkpoints + "/iter_0000006", ""), std::set<std::string>{"shard-r0-of-4.h5"})
      << "data-parallel rank 0 writes everything, once";
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
  // tp ranks 0 and 1 of dp rank 0 (world ranks 0, 1) write their shards; tp rank 0 the whole norms.
  const std::string saved = checkpoints + "/iter_0000006";
  EXPECT_EQ(files_holding(saved, "model/decoder.layers.0.self_attention.linear_qkv.weight"),
            (std::set<std::string>{"shard-r0-of-4.h5", "shard-r1-of-4.h5"}));
  EXPECT_EQ(files_holding(saved, "model/decoder.layers.0.input_layernorm.weight"),
            std::set<std::string>{"shard-r0-of-4.h5"});
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
    EXPECT_EQ(files_holding(checkpoints + "/iter_0000006", "optimizer/"),
              (std::set<std::string>{"shard-r0-of-4.h5", "shard-r1-of-4.h5", "shard-r2-of-4.h5", "shard-r3-of-4.h5"}))
        << "every dp rank writes its optimizer slices";
    EXPECT_EQ(files_holding(checkpoints + "/iter_0000006", "model/"), std::set<std::string>{"shard-r0-of-4.h5"});
  }
}

TEST_F(TrainMpi, ZeroJobsResumeBitForBitAndOnAnotherDataParallelSize) {
  std::vector<std::string> zero = {"parallel.zero_stage=2", "parallel.ddp_bucket_size_mb=0.02"};
  Metrics uninterrupted = run_ranks(4, "zero_whole", zero);
  std::vector<std::string> job = zero;
  for (const char* o : {"train.resume=auto", "train.exit_interval=3"}) job.push_back(o);
  const std::string checkpoints = folder_->file("zero_jobs_checkpoints");
  job.push_back("checkpoint.save=" + checkpoints);
  run_ranks(4, "zero_jobs", job, 1, 3, "_first");
  Metrics resumed = run_ranks(4, "zero_jobs", job, 4, 6, "_second");
  ASSERT_EQ(resumed.steps.size(), size_t(kSteps));
  for (const auto& [step, expected] : uninterrupted.steps) {
    EXPECT_EQ(resumed.steps.at(step).at("loss").get<double>(), expected.at("loss").get<double>()) << "step " << step;
    EXPECT_EQ(resumed.steps.at(step).at("grad_norm").get<double>(), expected.at("grad_norm").get<double>())
        << "step " << step;
  }
  // The 4 ranks' slices of step 3 resume on 2 ranks (other slices), as the one-process run goes on.
  expect_resumes_like_one_rank(2, "zero_dp2", {zero[0], zero[1], "train.resume=" + checkpoints + "/iter_0000003"});
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

// ZeRO-3 checkpoints: the gathered weights (written by dp rank 0) and every dp rank's optimizer
// slices; jobs of 3 steps resume into the shards and give exactly the uninterrupted run's losses.
// The checkpoint also resumes on another dp size and with ZeRO-2 (other slices), like the
// one-process run to 1e-5.
TEST_F(TrainMpi, ZeroStage3JobsResumeBitForBitAndIntoAnotherLayout) {
  Metrics uninterrupted = run_ranks(4, "zero3_whole", {"parallel.zero_stage=3"});
  std::string checkpoints = folder_->file("zero3_jobs_checkpoints");
  std::vector<std::string> job = {"parallel.zero_stage=3", "train.resume=auto", "train.exit_interval=3",
                                  "checkpoint.save=" + checkpoints};
  run_ranks(4, "zero3_jobs", job, 1, 3, "_first");
  EXPECT_EQ(folder_names(checkpoints), (std::vector<std::string>{"iter_0000003"}));
  Metrics resumed = run_ranks(4, "zero3_jobs", job, 4, 6, "_second");
  EXPECT_THAT(last_output_, HasSubstr("resumed from "));
  expect_bit_for_bit(resumed, uninterrupted);
  CheckpointReader saved(checkpoints + "/iter_0000006");
  EXPECT_EQ(saved.tensor("model/embedding.word_embeddings.weight").shape, (Shape{512, 64}));
  EXPECT_EQ(saved.metadata().optimizer_steps_taken, kSteps);
  EXPECT_EQ(files_holding(checkpoints + "/iter_0000006", "model/"), std::set<std::string>{"shard-r0-of-4.h5"});

  const std::string step3 = "train.resume=" + checkpoints + "/iter_0000003";
  expect_resumes_like_one_rank(2, "zero3_dp2", {"parallel.zero_stage=3", step3});
  expect_resumes_like_one_rank(4, "zero3_as_zero2", {"parallel.zero_stage=2", step3});
}

TEST_F(TrainMpi, FsdpWithTensorParallelismAndDropoutJobsResumeBitForBit) {
  // tp 2 x dp 2: every rank writes its slices, dp rank 0 of each tp rank its shard of the
  // gathered weights and its tp rank's model-parallel stream; dropout makes the streams matter.
  std::vector<std::string> layout = {"parallel.fsdp=true", "parallel.tensor_model_parallel_size=2",
                                     "model.hidden_dropout=0.1"};
  Metrics uninterrupted = run_ranks(4, "fsdp_tp_whole", layout);
  std::string checkpoints = folder_->file("fsdp_tp_checkpoints");
  std::vector<std::string> job = layout;
  for (const std::string& o :
       {std::string("train.resume=auto"), std::string("train.exit_interval=3"), "checkpoint.save=" + checkpoints})
    job.push_back(o);
  run_ranks(4, "fsdp_tp_jobs", job, 1, 3, "_first");
  EXPECT_EQ(CheckpointReader(checkpoints + "/iter_0000003").metadata().rng.size(), 2u) << "one per tp rank";
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
    write_random_corpus(folder_->file("corpus"));
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
  // Stage 0 (rank 0) writes the embedding, stage 1 (rank 1) the last layer; the tied copy once.
  const std::string saved = checkpoints + "/iter_0000006";
  EXPECT_EQ(files_holding(saved, "model/embedding.word_embeddings.weight"), std::set<std::string>{"shard-r0-of-2.h5"});
  EXPECT_EQ(files_holding(saved, "model/decoder.layers.7."), std::set<std::string>{"shard-r1-of-2.h5"});
  Metrics gpipe =
      run_ranks(2, "pp2_gpipe", {"parallel.pipeline_model_parallel_size=2", "parallel.pipeline_schedule=gpipe"});
  EXPECT_THAT(last_output_, HasSubstr("pipeline: gpipe schedule"));
  expect_matches_one_rank(gpipe);
}

TEST_F(TrainPipeline, TwoStageJobsResumeWhereTheyLeftOffAndWithoutThePipeline) {
  const std::string checkpoints = folder_->file("pp_jobs_checkpoints");
  std::vector<std::string> job = {"parallel.pipeline_model_parallel_size=2", "train.resume=auto",
                                  "train.exit_interval=3", "checkpoint.save=" + checkpoints};
  run_ranks(2, "pp_jobs", job, 1, 3, "_first");
  Metrics resumed = run_ranks(2, "pp_jobs", job, 4, 6, "_second");
  expect_matches_one_rank(resumed);
  expect_resumes_like_one_rank(2, "pp_jobs_pp1", {"train.resume=" + checkpoints + "/iter_0000003"});
}

TEST_F(TrainPipeline, TwoStagesInterleavedWithTwoChunksMatchOneProcess) {
  Metrics interleaved = run_ranks(
      2, "pp2_vpp2", {"parallel.pipeline_model_parallel_size=2", "parallel.virtual_pipeline_model_parallel_size=2"});
  EXPECT_THAT(last_output_, HasSubstr("pipeline: interleaved_1f1b schedule, 8 micro-batches per step"));
  expect_matches_one_rank(interleaved);
}

// Interleaved: each pp rank writes both its chunks (layers 0-1 and 4-5 on stage 0) and each
// chunk's dropout stream; jobs of 3 steps give exactly the uninterrupted run's losses. Without
// interleaving the checkpoint resumes too (dropout streams start afresh there: logged).
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
  const std::string step3 = checkpoints + "/iter_0000003";
  for (const char* name : {"embedding.word_embeddings.weight", "decoder.layers.1.mlp.linear_fc1.weight",
                           "decoder.layers.4.mlp.linear_fc1.weight", "decoder.layers.5.mlp.linear_fc1.weight"}) {
    EXPECT_EQ(files_holding(step3, std::string("model/") + name), std::set<std::string>{"shard-r0-of-2.h5"}) << name;
    EXPECT_EQ(files_holding(step3, std::string("optimizer/exp_avg/") + name), std::set<std::string>{"shard-r0-of-2.h5"})
        << name;
  }
  EXPECT_EQ(files_holding(step3, "model/decoder.layers.2.mlp.linear_fc1.weight"),
            std::set<std::string>{"shard-r1-of-2.h5"})
      << "stage 1's layer";
  EXPECT_EQ(CheckpointReader(step3).metadata().rng.size(), 4u) << "2 stages x 2 chunks";
  Metrics resumed = run_ranks(2, "vpp_jobs", job, 4, 6, "_second");
  expect_bit_for_bit(resumed, uninterrupted);
  EXPECT_NE(uninterrupted.steps.at(kSteps).at("loss").get<double>(),
            one_rank_->steps.at(kSteps).at("loss").get<double>())
      << "dropout must change the losses, or this test checks nothing about the chunks' streams";

  std::vector<std::string> plain = {layout[0], layout[2], "train.resume=" + step3,  // vpp 1
                                    "logging.run_dir=" + folder_->file("vpp_as_plain")};
  Outcome outcome = run(mpirun(2) + train_command(recipe(), plain), *folder_, "vpp_as_plain");
  ASSERT_EQ(outcome.status, 0) << outcome.err;
  EXPECT_THAT(outcome.out, HasSubstr("dropout streams start afresh here"));
  EXPECT_THAT(outcome.out, HasSubstr("step     6/"));
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
  EXPECT_EQ(files_holding(checkpoints + "/iter_0000006", "optimizer/"),
            (std::set<std::string>{"shard-r0-of-4.h5", "shard-r1-of-4.h5", "shard-r2-of-4.h5", "shard-r3-of-4.h5"}));
}

class BadLayout : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    folder_ = new TemporaryFolder();
    write_random_corpus(folder_->file("corpus"));
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
