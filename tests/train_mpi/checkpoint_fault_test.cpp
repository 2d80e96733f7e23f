// Distributed checkpoints under faults, with the real `tessera train` (f32, CPU, llama-tiny):
//   - a rank SIGKILLed halfway through writing its file of step 4 (test hook
//     TESSERA_TEST_KILL_DURING_SAVE): iter_0000004/ has no COMMIT, train.resume=auto picks
//     iter_0000002/, and the resumed job's losses equal the uninterrupted run's bit for bit;
//   - SIGTERM (one process) and SIGUSR1 (sent to mpirun, which forwards it to both ranks) during
//     training: the run saves at the next step boundary, prints `preempted: saved <folder> at
//     step N` once, exits 0, and the folder is a committed checkpoint of step N;
//   - a truncated shard, a corrupted shard, a missing shard and a model of another shape: the
//     resume fails with one error naming the file and the tensor.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>

#include "data/data_test_util.h"
#include "launcher/distributed_checkpoint.h"
#include "train_mpi_support.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using namespace train_mpi;
using ::testing::HasSubstr;
using testing::TemporaryFolder;

std::string recipe_text(const std::string& data_prefix, int64_t train_iters) {
  return "model:\n  preset: llama-tiny\n"
         "data:\n  data_path: [" +
         data_prefix +
         "]\n  split: \"100,0,0\"\n  seq_length: 16\n  num_workers: 1\n"
         "optimizer:\n  lr: 1.0e-3\n  min_lr: 1.0e-4\n"
         "train:\n  micro_batch_size: 1\n  global_batch_size: 8\n  train_iters: " +
         std::to_string(train_iters) +
         "\n  eval_interval: 100000\n  eval_iters: 0\n  precision: fp32\n  device: cpu\n"
         "logging:\n  log_interval: 1\n";
}

class CheckpointFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    write_random_corpus(folder_.file("corpus"));
    std::ofstream(recipe(6)) << recipe_text(folder_.file("corpus"), 6);
    std::ofstream(recipe(100000)) << recipe_text(folder_.file("corpus"), 100000);
  }
  std::string recipe(int64_t train_iters) const { return folder_.file("recipe" + std::to_string(train_iters) + ".yaml"); }
  Outcome train(int ranks, int64_t iters, const std::string& name, std::vector<std::string> overrides,
                const std::string& environment = "") {
    overrides.push_back("logging.run_dir=" + folder_.file(name));
    return run(environment + mpirun(ranks) + train_command(recipe(iters), overrides), folder_.path().string(), name);
  }
  // Starts the run in the background, waits until it has logged 2 steps, sends `signal` to the
  // launched process (mpirun, or the single process) and waits for it to end.
  Outcome train_and_signal(int ranks, const std::string& name, const std::string& signal,
                           std::vector<std::string> overrides) {
    const std::string run_dir = folder_.file(name), metrics = run_dir + "/metrics.jsonl";
    overrides.push_back("logging.run_dir=" + run_dir);
    const std::string out = folder_.file(name + ".stdout"), err = folder_.file(name + ".stderr");
    const std::string script = mpirun(ranks) + train_command(recipe(100000), overrides) + " >" + out + " 2>" + err +
                               " & pid=$!; while kill -0 $pid 2>/dev/null && [ \"$(cat " + metrics +
                               " 2>/dev/null | wc -l)\" -lt 2 ]; do sleep 0.1; done; kill -" + signal +
                               " $pid; wait $pid";
    const int raw = std::system(("bash -c '" + script + "'").c_str());
    return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, read_text(out), read_text(err)};
  }

  TemporaryFolder folder_;
};

TEST_F(CheckpointFaults, ARankKilledMidSaveLeavesThePreviousCheckpointWhichResumeAutoPicks) {
  const std::vector<std::string> zero = {"parallel.zero_stage=1", "checkpoint.save_interval=2"};
  std::vector<std::string> uninterrupted = zero;
  Outcome whole = train(2, 6, "uninterrupted", uninterrupted);
  ASSERT_EQ(whole.status, 0) << whole.err;

  const std::string saved = folder_.file("saved");
  std::vector<std::string> job = zero;
  job.push_back("checkpoint.save=" + saved);
  Outcome killed = train(2, 6, "killed", job, "TESSERA_TEST_KILL_DURING_SAVE=1:4 ");
  EXPECT_NE(killed.status, 0);
  std::vector<CheckpointEntry> folders = list_checkpoint_folders(saved);
  ASSERT_GE(folders.size(), 2u);
  EXPECT_EQ(folders[0].step, 2);
  EXPECT_TRUE(folders[0].committed);
  EXPECT_EQ(folders[1].step, 4);
  EXPECT_FALSE(folders[1].committed) << "rank 1 died writing step 4: no COMMIT";

  Outcome resumed = train(2, 6, "resumed", job);
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_THAT(resumed.out, HasSubstr("resumed from " + saved + "/iter_0000002"));
  EXPECT_THAT(resumed.out, HasSubstr(saved + "/iter_0000004 has no COMMIT marker"));
  const std::map<int64_t, double> expected = read_losses(folder_.file("uninterrupted")),
                                   got = read_losses(folder_.file("resumed"));
  ASSERT_EQ(got.size(), 4u);
  for (const auto& [step, loss] : got) EXPECT_EQ(loss, expected.at(step)) << "step " << step;
  EXPECT_TRUE(fs::exists(fs::path(saved) / "iter_0000004" / "COMMIT")) << "step 4 saved again, whole";
}

// The preempted run's last logged step is the one it saved; the folder is committed.
void expect_preempted_save(const Outcome& outcome, const std::string& saved, int ranks) {
  EXPECT_EQ(outcome.status, 0) << outcome.err;
  std::smatch match;
  const std::regex line(R"(preempted: saved (\S+) at step (\d+))");
  ASSERT_TRUE(std::regex_search(outcome.out, match, line)) << outcome.out;
  const int64_t step = std::stoll(match[2].str());
  std::printf("  %s\n", match[0].str().c_str());
  EXPECT_EQ(match[1].str(), saved + "/" + checkpoint_folder_name(step));
  EXPECT_EQ(std::regex_search(match.suffix().str(), line), false) << "one line";
  CheckpointReader reader(match[1].str());
  EXPECT_EQ(reader.metadata().step, step);
  EXPECT_EQ(reader.metadata().layout.world_size, ranks);
  EXPECT_THAT(outcome.out, HasSubstr("step " + std::string(5 - std::to_string(step).size(), ' ') +
                                     std::to_string(step) + "/100000"));
  EXPECT_THAT(outcome.out, ::testing::Not(HasSubstr("step " + std::string(5 - std::to_string(step + 1).size(), ' ') +
                                                    std::to_string(step + 1) + "/100000")));
}

TEST_F(CheckpointFaults, SigtermSavesAtTheNextStepBoundaryAndExitsZero) {
  const std::string saved = folder_.file("saved");
  Outcome outcome = train_and_signal(1, "sigterm", "TERM", {"checkpoint.save=" + saved});
  expect_preempted_save(outcome, saved, 1);
}

TEST_F(CheckpointFaults, Sigusr1ToMpirunStopsBothRanksAtTheSameStep) {
  const std::string saved = folder_.file("saved");
  Outcome outcome = train_and_signal(2, "sigusr1", "USR1", {"checkpoint.save=" + saved});
  expect_preempted_save(outcome, saved, 2);
}

TEST_F(CheckpointFaults, DamagedCheckpointsFailNamingTheFileAndTheTensor) {
  const std::string saved = folder_.file("saved");
  Outcome first = train(1, 6, "first", {"train.exit_interval=2", "checkpoint.save=" + saved});
  ASSERT_EQ(first.status, 0) << first.err;
  const fs::path good = fs::path(saved) / "iter_0000002";
  const std::string shard = rank_file_name(0, 1);
  auto damaged_copy = [&](const std::string& name) {
    const fs::path copy = folder_.path() / name / "iter_0000002";
    fs::create_directories(copy.parent_path());
    fs::copy(good, copy);
    return copy;
  };
  auto resume_fails = [&](const fs::path& checkpoint, const std::string& name, std::vector<std::string> extra = {}) {
    extra.push_back("train.resume=" + checkpoint.string());
    Outcome outcome = train(1, 6, name, extra);
    EXPECT_NE(outcome.status, 0);
    EXPECT_EQ(outcome.out.find("step     3/"), std::string::npos);
    std::printf("  %s: %s", name.c_str(), outcome.err.c_str());
    return outcome.err;
  };

  const fs::path truncated = damaged_copy("truncated");
  fs::resize_file(truncated / shard, fs::file_size(truncated / shard) / 2);
  std::string error = resume_fails(truncated, "truncated");
  EXPECT_THAT(error, HasSubstr((truncated / shard).string()));
  EXPECT_THAT(error, HasSubstr("cannot read tensor "));

  const fs::path corrupted = damaged_copy("corrupted");
  {
    std::fstream file(corrupted / shard, std::ios::in | std::ios::out | std::ios::binary);
    const auto size = static_cast<std::streamoff>(fs::file_size(corrupted / shard));
    file.seekp(size * 2 / 5);
    file << std::string(static_cast<size_t>(size / 5), '\x5a');
  }
  error = resume_fails(corrupted, "corrupted");
  EXPECT_THAT(error, HasSubstr((corrupted / shard).string()));
  EXPECT_THAT(error, HasSubstr("cannot read tensor "));

  const fs::path missing = damaged_copy("missing");
  fs::remove(missing / shard);
  error = resume_fails(missing, "missing");
  EXPECT_THAT(error, HasSubstr((missing / shard).string() + " is missing"));
  EXPECT_THAT(error, HasSubstr("cannot read tensor model/"));

  error = resume_fails(good, "wider", {"model.ffn_hidden_size=256"});
  EXPECT_THAT(error, HasSubstr((good / "metadata.json").string()));
  EXPECT_THAT(error, HasSubstr("tensor model/decoder.layers.0.mlp.linear_fc1.weight has shape [256, 64] in the "
                               "checkpoint but [512, 64] in this model"));
}

}  // namespace
}  // namespace tessera
