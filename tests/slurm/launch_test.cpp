// `tessera launch` without Slurm, and the world agreement of `tessera train` (the real executable,
// mpirun on CPU; label mpi):
//   - --dry-run for 16 nodes x 8 GPUs prints the sbatch script: the layout, GPUs, partition,
//     account, time, the warning signal, srun --mpi=pmix; bash accepts its syntax; nothing is
//     written. A layout that does not fit 128 ranks is refused in one line, naming the key.
//   - A sweep file becomes a job array with one case per line; a bad line is refused, naming it.
//   - --local trains on 2 ranks with mpirun, and its losses equal the one-process run (1e-5).
//   - Fail fast: ranks given different overrides end with one error naming the rank and node; a
//     task that Slurm started as one of 4 but that MPI made a singleton fails before training; a
//     rank whose peer never answers ends the job within --connect-timeout, naming its node.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "launch_test_util.h"

namespace tessera {
namespace {

namespace fs = std::filesystem;
using namespace launch_test;
using ::testing::HasSubstr;
using ::testing::Not;

class Launch : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    folder_ = new testing::TemporaryFolder();
    write_random_corpus(folder_->file("corpus"));
    std::ofstream(recipe()) << recipe_text(folder_->file("corpus"), 4);
    std::ofstream(gpu_recipe()) << recipe_text(folder_->file("corpus"), 4, "cuda");
  }
  static void TearDownTestSuite() { delete folder_; }
  static std::string recipe() { return folder_->file("recipe.yaml"); }
  static std::string gpu_recipe() { return folder_->file("gpu_recipe.yaml"); }
  static std::string dir() { return folder_->path().string(); }
  static testing::TemporaryFolder* folder_;
};

testing::TemporaryFolder* Launch::folder_ = nullptr;

TEST_F(Launch, DryRunForSixteenNodesPrintsTheSbatchScriptAndWritesNothing) {
  std::string run_dir = folder_->file("big_run");
  Outcome dry =
      run(tessera() + " launch " + gpu_recipe() +
              " parallel.tensor_model_parallel_size=2 parallel.pipeline_model_parallel_size=2"
              " train.global_batch_size=64 logging.run_dir=" +
              run_dir + " --nodes 16 --gpus-per-node 8 --partition gpu --account proj --time 04:00:00 --dry-run",
          dir(), "dry16");
  ASSERT_EQ(dry.status, 0) << dry.err;
  const std::string& script = dry.out;
  for (const char* line :
       {"#SBATCH --nodes=16\n", "#SBATCH --ntasks-per-node=8\n", "#SBATCH --gpus-per-node=8\n",
        "#SBATCH --partition=gpu\n", "#SBATCH --account=proj\n", "#SBATCH --time=04:00:00\n",
        "#SBATCH --signal=B:USR1@300\n", "#SBATCH --requeue\n", "srun --mpi=pmix --kill-on-bad-exit=1"})
    EXPECT_THAT(script, HasSubstr(line));
  EXPECT_THAT(script, HasSubstr("#SBATCH --output=" + run_dir + "/slurm/job-%j.out\n"));
  EXPECT_THAT(script, HasSubstr("'parallel.tensor_model_parallel_size=2' 'parallel.pipeline_model_parallel_size=2'"));
  EXPECT_THAT(script, HasSubstr("16 node(s) x 8 rank(s) = 128 ranks"));
  EXPECT_THAT(script, Not(HasSubstr("{{")));
  EXPECT_FALSE(fs::exists(run_dir)) << "a dry run writes nothing";
  std::ofstream(folder_->file("dry16.sbatch")) << script;
  EXPECT_EQ(run("bash -n " + folder_->file("dry16.sbatch"), dir(), "bash_n").status, 0) << "bash rejects the script";
}

TEST_F(Launch, LayoutThatDoesNotFitTheRanksIsRefusedBeforeAnythingIsWritten) {
  std::string run_dir = folder_->file("bad_run");
  Outcome refused =
      run(tessera() + " launch " + gpu_recipe() + " parallel.tensor_model_parallel_size=3 logging.run_dir=" + run_dir +
              " --nodes 16 --gpus-per-node 8 --dry-run",
          dir(), "bad16");
  EXPECT_EQ(refused.status, 1);
  EXPECT_EQ(count(refused.err, "tessera: error"), 1) << refused.err;
  EXPECT_THAT(refused.err,
              HasSubstr("parallel.tensor_model_parallel_size = 3 does not divide the 128 launched rank(s)"));
  EXPECT_EQ(refused.out, "");
  EXPECT_FALSE(fs::exists(run_dir));
}

TEST_F(Launch, SweepBecomesAJobArrayWithOneCasePerLine) {
  std::ofstream(folder_->file("sweep.txt"))
      << "# learning rates\noptimizer.lr=1e-3\n\noptimizer.lr=3e-3 train.seed=5\n";
  std::string run_dir = folder_->file("sweep_run");
  Outcome dry = run(tessera() + " launch " + recipe() + " logging.run_dir=" + run_dir +
                        " --nodes 1 --gpus-per-node 4 --sweep " + folder_->file("sweep.txt") + " --dry-run",
                    dir(), "sweep");
  ASSERT_EQ(dry.status, 0) << dry.err;
  EXPECT_THAT(dry.out, HasSubstr("#SBATCH --array=0-1\n"));
  EXPECT_THAT(dry.out, HasSubstr("0) overrides+=('optimizer.lr=1e-3' 'logging.run_dir=" + run_dir + "/sweep-0') ;;"));
  EXPECT_THAT(dry.out, HasSubstr("1) overrides+=('optimizer.lr=3e-3' 'train.seed=5' 'logging.run_dir=" + run_dir +
                                 "/sweep-1') ;;"));
  EXPECT_THAT(dry.out, HasSubstr("#SBATCH --output=" + run_dir + "/slurm/job-%A_%a.out"));
  EXPECT_THAT(dry.out, Not(HasSubstr("--gpus-per-node"))) << "ranks on CPU ask for no GPU";

  std::ofstream(folder_->file("bad_sweep.txt")) << "optimizer.lr=1e-3\noptimizer.lrr=2\n";
  Outcome refused = run(tessera() + " launch " + recipe() + " --nodes 1 --gpus-per-node 4 --sweep " +
                            folder_->file("bad_sweep.txt") + " --dry-run",
                        dir(), "bad_sweep");
  EXPECT_EQ(refused.status, 1);
  EXPECT_THAT(refused.err, HasSubstr("job 1 (line 'optimizer.lrr=2'): command line: unknown key 'optimizer.lrr' "
                                     "(did you mean 'optimizer.lr'?)"));
}

TEST_F(Launch, LocalRunOnTwoRanksMatchesOneProcess) {
  Outcome one = run(tessera() + " train " + recipe() + " logging.run_dir=" + folder_->file("one"), dir(), "one");
  ASSERT_EQ(one.status, 0) << one.err;
  Outcome local = run(tessera() + " launch " + recipe() + " logging.run_dir=" + folder_->file("local") +
                          " --local --nodes 1 --gpus-per-node 2",
                      dir(), "local");
  ASSERT_EQ(local.status, 0) << local.err;
  EXPECT_THAT(local.out, HasSubstr("mpirun' '-np' '2'"));
  std::map<int64_t, double> expected = read_losses(folder_->file("one")), got = read_losses(folder_->file("local"));
  ASSERT_EQ(expected.size(), 4u);
  ASSERT_EQ(got.size(), 4u);
  for (const auto& [step, loss] : expected) EXPECT_NEAR(got.at(step), loss, 1e-5 * std::abs(loss)) << "step " << step;
}

TEST_F(Launch, RanksWithDifferentOverridesStopWithOneErrorNamingTheRankAndNode) {
  std::string train = tessera() + " train " + recipe() + " logging.run_dir=" + folder_->file("mixed");
  Outcome mixed = run(mpirun(1) + train + " : -np 1 " + train + " train.seed=7", dir(), "mixed");
  EXPECT_NE(mixed.status, 0);
  EXPECT_EQ(count(mixed.err, "tessera: error"), 1) << mixed.err;
  EXPECT_THAT(mixed.err, HasSubstr("rank 1 (node " + host_name() + ") resolved a different recipe than rank 0 (node " +
                                   host_name() + ")"));
  EXPECT_EQ(count(mixed.out, "step "), 0) << mixed.out;
  EXPECT_FALSE(fs::exists(folder_->file("mixed")));
}

TEST_F(Launch, TaskThatMpiLeftAloneFailsBeforeTraining) {
  // What srun without --mpi=pmix does: Slurm says 4 tasks, MPI gives each a world of its own.
  Outcome alone = run("SLURM_STEP_NUM_TASKS=4 SLURM_PROCID=2 SLURM_LOCALID=2 " + tessera() + " train " + recipe() +
                          " logging.run_dir=" + folder_->file("alone"),
                      dir(), "alone");
  EXPECT_EQ(alone.status, 1);
  EXPECT_THAT(alone.err, HasSubstr("Slurm task 2 (node " + host_name() +
                                   ") started as one of 4 tasks (SLURM_STEP_NUM_TASKS) but MPI connected 1 rank(s)"));
  EXPECT_THAT(alone.err, HasSubstr("srun --mpi=pmix"));
  EXPECT_FALSE(fs::exists(folder_->file("alone")));
}

TEST_F(Launch, RankThatCannotReachItsPeerEndsTheJobNamingItsNode) {
  Outcome unreachable =
      run(mpirun(1) + tessera() + " train " + recipe() + " logging.run_dir=" + folder_->file("unreachable") +
              " --connect-timeout 1 : -np 1 " + TESSERA_IDLE_RANK,
          dir(), "unreachable");
  EXPECT_NE(unreachable.status, 0);
  EXPECT_THAT(unreachable.err, HasSubstr("tessera: error: rank 0 (node " + host_name() +
                                         ") of 2: could not reach the other ranks within 1 s"));
  EXPECT_FALSE(fs::exists(folder_->file("unreachable")));
}

}  // namespace
}  // namespace tessera
