// The sbatch script's pieces without Slurm: the template renderer, Slurm's time formats, shell
// quoting (checked by bash itself) and the world agreement's verdict on gathered rank identities.
#include "launcher/slurm_script.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "core/check.h"
#include "launcher/world_agreement.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(RenderTemplate, FillsPlaceholdersAndDropsLinesLeftEmpty) {
  std::string text = "#!/bin/bash\n#SBATCH --nodes={{nodes}}\n{{options}}\n  {{empty}}\necho {{a}}-{{b}} done\n";
  std::string got = render_template(
      text, {{"nodes", "16"}, {"options", "#SBATCH -p gpu\n#SBATCH -A x"}, {"empty", ""}, {"a", "1"}, {"b", ""}},
      "t.in");
  EXPECT_EQ(got, "#!/bin/bash\n#SBATCH --nodes=16\n#SBATCH -p gpu\n#SBATCH -A x\necho 1- done\n");
}

TEST(RenderTemplate, UnknownPlaceholderNamesTheLineAndTheKnownNames) {
  std::string error = error_of([] { render_template("a\nb {{nodez}}\n", {{"nodes", "1"}}, "t.in"); });
  EXPECT_THAT(error, HasSubstr("t.in:2: unknown placeholder {{nodez}}"));
  EXPECT_THAT(error, HasSubstr("fills in: nodes"));
}

TEST(SlurmTime, ReadsEverySlurmFormat) {
  EXPECT_EQ(slurm_time_seconds("90"), 90 * 60);                         // minutes
  EXPECT_EQ(slurm_time_seconds("5:30"), 5 * 60 + 30);                   // minutes:seconds
  EXPECT_EQ(slurm_time_seconds("04:00:00"), 4 * 3600);                  // hours:minutes:seconds
  EXPECT_EQ(slurm_time_seconds("2-00:00:00"), 2 * 86400);               // days-hours:minutes:seconds
  EXPECT_EQ(slurm_time_seconds("1-12"), 86400 + 12 * 3600);             // days-hours
  EXPECT_EQ(slurm_time_seconds("1-2:30"), 86400 + 2 * 3600 + 30 * 60);  // days-hours:minutes
  EXPECT_THAT(error_of([] { slurm_time_seconds("4h"); }), HasSubstr("--time '4h' is not a Slurm time"));
  EXPECT_THAT(error_of([] { slurm_time_seconds("0"); }), HasSubstr("is zero"));
}

TEST(SbatchScript, RefusesAWarningThatComesBeforeTheJobStarts) {
  SbatchJob job;
  job.time = "5";  // 300 s
  job.signal_seconds = 300;
  EXPECT_THAT(error_of([&] { sbatch_script(job, "{{signal_seconds}}\n", "t.in"); }),
              HasSubstr("--signal-seconds 300 is not below --time 5 (300 s)"));
}

TEST(ShellQuote, BashReadsBackTheExactWords) {
  for (std::string word : {"plain", "it's", "a b", "$HOME", "x='y'", "back\\slash"}) {
    std::string command = "printf %s " + shell_quote(word);
    FILE* pipe = popen(command.c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    std::string out;
    char buffer[128];
    while (fgets(buffer, sizeof(buffer), pipe)) out += buffer;
    EXPECT_EQ(pclose(pipe), 0);
    EXPECT_EQ(out, word);
  }
}

std::vector<RankIdentity> two_nodes_of_two() {
  std::vector<RankIdentity> ranks;
  for (int r = 0; r < 4; ++r) ranks.push_back({r, 4, r < 2 ? "n1" : "n2", r % 2, 42});
  return ranks;
}

TEST(WorldDisagreement, AgreeingRanksPassAndGetTheirPlaceOnTheirNode) {
  std::vector<RankIdentity> ranks = two_nodes_of_two();
  EXPECT_EQ(world_disagreement(ranks), "");
  for (int r = 0; r < 4; ++r) EXPECT_EQ(node_local_rank(ranks, r), r % 2);
  ranks[1].node = "n2";  // n1: rank 0; n2: ranks 1, 2, 3
  EXPECT_EQ(node_local_rank(ranks, 3), 2);
}

TEST(WorldDisagreement, ADifferentRecipeNamesTheRankAndItsNode) {
  std::vector<RankIdentity> ranks = two_nodes_of_two();
  ranks[3].recipe_hash = 7;
  EXPECT_THAT(world_disagreement(ranks),
              HasSubstr("rank 3 (node n2) resolved a different recipe than rank 0 (node n1)"));
  ranks[3].recipe_hash.reset();  // a rank that could not load the recipe reports its own error later
  EXPECT_EQ(world_disagreement(ranks), "");
}

TEST(WorldDisagreement, InconsistentPlacementIsNamed) {
  std::vector<RankIdentity> ranks = two_nodes_of_two();
  ranks[3].slurm_local_id = 0;  // Slurm placed two local task 0 on n2
  EXPECT_THAT(world_disagreement(ranks), HasSubstr("rank 3 (node n2) is Slurm's local task 0 (SLURM_LOCALID) but "
                                                   "rank 1 of its node's ranks"));
  ranks = two_nodes_of_two();
  ranks[1].world_size = 2;
  EXPECT_THAT(world_disagreement(ranks), HasSubstr("rank 1 (node n1) sees itself as rank 1 of 2"));
}

}  // namespace
}  // namespace tessera
