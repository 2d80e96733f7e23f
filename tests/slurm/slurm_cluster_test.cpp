// `tessera launch` against a real one-node Slurm (label slurm): the fixture local_slurm
// (slurm/start_local_slurm.sh, 8 CPUs declared) runs first and slurm/stop_local_slurm.sh stops
// it after, even when a test fails; SLURM_CONF points at it. Ranks on CPU, f32, tiny Llama.
//   - `tessera launch --nodes 1 --gpus-per-node 4 --wait`: srun --mpi=pmix starts 4 ranks whose
//     losses equal, bit for bit, the same job under `mpirun -np 4`.
//   - A sweep of two lines is one job array: task 0 (the default seed) equals the mpirun run,
//     task 1 (another seed) differs from it; each writes its own run directory.
//   - Tasks of one srun given different overrides (--multi-prog) stop before training with one
//     error naming the rank and its node. (srun without --mpi=pmix cannot be tested here: this
//     Open MPI refuses to start without PMI; launch_test covers a task left alone by MPI.)
//   - Preemption: the warning signal (scancel --batch --signal=USR1, as Slurm sends it before the
//     time limit) reaches the ranks, which save and exit; the job requeues itself, resumes from the
//     checkpoint and ends with the loss of an uninterrupted run, every step logged once.
// Skipped (not passed) when Slurm is not installed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "launch_test_util.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using namespace launch_test;
using ::testing::HasSubstr;

constexpr int kSteps = 6;
constexpr int kPreemptSteps = 300;  // long enough for the signal to land mid-run
// The sbatch script's OMP_NUM_THREADS (without --cpus-per-task): the CPU kernels' summation order
// depends on the thread count, so the mpirun references use it too.
const std::string kOneThread = "OMP_NUM_THREADS=1 ";

bool slurm_running() {
  const char* conf = std::getenv("SLURM_CONF");
  return conf && fs::exists(conf) && std::system("command -v sbatch >/dev/null 2>&1") == 0;
}

// "JobState=COMPLETED" -> "COMPLETED" for job `id`.
std::string job_field(const std::string& id, const std::string& field, const std::string& dir) {
  Outcome shown = run("scontrol show job -o " + id, dir, "scontrol");
  std::smatch m;
  std::regex pattern(field + "=(\\S+)");
  return std::regex_search(shown.out, m, pattern) ? m[1].str() : "";
}

class SlurmCluster : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!slurm_running()) return;
    folder_ = new testing::TemporaryFolder();
    write_random_corpus(folder_->file("corpus"));
    std::ofstream(recipe()) << recipe_text(folder_->file("corpus"), kSteps);
    Outcome reference =
        run(kOneThread + mpirun(4) + tessera() + " train " + recipe() + " logging.run_dir=" + folder_->file("mpirun"),
            dir(), "mpirun");
    ASSERT_EQ(reference.status, 0) << reference.err;
  }
  static void TearDownTestSuite() { delete folder_; }
  void SetUp() override {
    if (!slurm_running())
      GTEST_SKIP() << "no local Slurm (SLURM_CONF unset or sbatch missing): scripts/setup.sh installs slurm-wlm and "
                      "munge; the ctest fixture slurm.start starts it";
  }
  static std::string recipe() { return folder_->file("recipe.yaml"); }
  static std::string dir() { return folder_->path().string(); }
  static testing::TemporaryFolder* folder_;
};

testing::TemporaryFolder* SlurmCluster::folder_ = nullptr;

TEST_F(SlurmCluster, LaunchOfFourRanksOnOneNodeEqualsMpirun) {
  std::string run_dir = folder_->file("launched");
  Outcome launched = run(tessera() + " launch " + recipe() + " logging.run_dir=" + run_dir +
                             " --nodes 1 --gpus-per-node 4 --time 10 --wait",
                         dir(), "launched");
  ASSERT_EQ(launched.status, 0) << launched.out << launched.err;
  EXPECT_THAT(launched.out, HasSubstr("tessera launch: submitted job "));
  std::map<int64_t, double> expected = read_losses(folder_->file("mpirun")), got = read_losses(run_dir);
  ASSERT_EQ(expected.size(), size_t(kSteps));
  EXPECT_EQ(got, expected) << "srun --mpi=pmix and mpirun run the same 4 ranks";
  std::string log;
  for (const fs::directory_entry& f : fs::directory_iterator(fs::path(run_dir) / "slurm"))
    if (f.path().extension() == ".out") log += read_text(f.path().string());
  EXPECT_THAT(log, HasSubstr("on " + host_name() + ": 4 ranks"));
  EXPECT_EQ(count(log, "step     6/6"), 1) << log;
}

TEST_F(SlurmCluster, SweepRunsAsAJobArray) {
  std::ofstream(folder_->file("sweep.txt")) << "train.seed=1234\ntrain.seed=99\n";
  std::string run_dir = folder_->file("sweep");
  Outcome launched = run(tessera() + " launch " + recipe() + " logging.run_dir=" + run_dir +
                             " --nodes 1 --gpus-per-node 4 --wait --sweep " + folder_->file("sweep.txt"),
                         dir(), "sweep");
  ASSERT_EQ(launched.status, 0) << launched.out << launched.err;
  std::map<int64_t, double> expected = read_losses(folder_->file("mpirun"));
  EXPECT_EQ(read_losses(run_dir + "/sweep-0"), expected) << "task 0 has the default seed";
  std::map<int64_t, double> other = read_losses(run_dir + "/sweep-1");
  ASSERT_EQ(other.size(), size_t(kSteps));
  EXPECT_NE(other.at(1), expected.at(1)) << "task 1 has another seed";
}

TEST_F(SlurmCluster, TasksGivenDifferentOverridesStopWithOneErrorNamingTheRankAndNode) {
  // srun --multi-prog gives task 1 another seed: a node launched with a stale command line.
  std::string train = tessera() + " train " + recipe() + " logging.run_dir=" + folder_->file("mixed");
  std::ofstream(folder_->file("multi_prog.conf")) << "0 " << train << "\n1 " << train << " train.seed=7\n";
  Outcome mixed =
      run("srun -n 2 --mpi=pmix --kill-on-bad-exit=1 --multi-prog " + folder_->file("multi_prog.conf"), dir(), "mixed");
  EXPECT_NE(mixed.status, 0);
  EXPECT_EQ(count(mixed.err, "tessera: error"), 1) << mixed.err;
  EXPECT_THAT(mixed.err, HasSubstr("rank 1 (node " + host_name() + ") resolved a different recipe than rank 0 (node " +
                                   host_name() + ")"));
  EXPECT_EQ(count(mixed.out, "step "), 0) << mixed.out;
  EXPECT_FALSE(fs::exists(folder_->file("mixed")));
}

TEST_F(SlurmCluster, PreemptedJobSavesRequeuesAndEndsWithTheUninterruptedLoss) {
  std::vector<std::string> overrides = {"train.train_iters=" + std::to_string(kPreemptSteps), "train.resume=auto",
                                        "checkpoint.save_interval=100000"};
  std::string common;
  for (const std::string& o : overrides) common += " " + o;
  Outcome reference = run(kOneThread + mpirun(4) + tessera() + " train " + recipe() + common + " checkpoint.save=" +
                              folder_->file("long_checkpoints") + " logging.run_dir=" + folder_->file("long"),
                          dir(), "long");
  ASSERT_EQ(reference.status, 0) << reference.err;

  std::string run_dir = folder_->file("preempted");
  Outcome launched =
      run(tessera() + " launch " + recipe() + common + " checkpoint.save=" + folder_->file("preempted_checkpoints") +
              " logging.run_dir=" + run_dir + " --nodes 1 --gpus-per-node 4",
          dir(), "preempted");
  ASSERT_EQ(launched.status, 0) << launched.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(launched.out, m, std::regex("submitted job (\\d+)"))) << launched.out;
  const std::string id = m[1];
  const std::string log = run_dir + "/slurm/job-" + id + ".out";
  // Wait for training to run, then send the warning as Slurm does: to the batch shell only.
  while (read_text(log).find("step     3/") == std::string::npos) {
    ASSERT_NE(job_field(id, "JobState", dir()), "COMPLETED") << read_text(log);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(run("scancel --batch --signal=USR1 " + id, dir(), "scancel").status, 0);
  // The requeued job waits out the cluster's cred_expire (5 s) before it starts again.
  for (std::string state; (state = job_field(id, "JobState", dir())) != "COMPLETED";) {
    ASSERT_TRUE(state == "RUNNING" || state == "PENDING" || state == "REQUEUED" || state == "COMPLETING")
        << state << "\n"
        << read_text(log);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  std::string text = read_text(log);
  EXPECT_EQ(job_field(id, "Restarts", dir()), "1") << text;
  EXPECT_EQ(count(text, "preempted: saved"), 1) << text;
  EXPECT_THAT(text, HasSubstr("tessera launch: requeueing job " + id));
  EXPECT_THAT(text, HasSubstr("(restart 1)"));
  std::map<int64_t, double> expected = read_losses(folder_->file("long")), got = read_losses(run_dir);
  ASSERT_EQ(got.size(), size_t(kPreemptSteps)) << "every step once";
  EXPECT_EQ(got.at(kPreemptSteps), expected.at(kPreemptSteps)) << "the final loss of the uninterrupted run";
}

}  // namespace
}  // namespace tessera
