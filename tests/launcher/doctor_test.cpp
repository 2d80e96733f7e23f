// `tessera doctor hang` on synthetic dumps, each scenario with its diagnosis written by hand:
// a rank that never entered (idle, or itself blocked elsewhere: cause vs consequence), size,
// dtype and op mismatches (the minority named; an even split settled by the other groups of
// the same role, or reported as undecidable), a dead rank, a send that never came, a failed call
// quoted, a healthy run. The dumps are made with a FlightRecorder, the writer the real ranks
// use. Files: the dump folder is found in RUN_DIR or RUN_DIR/flight_recorder, misnamed and
// missing dumps are refused with a message, and the CLI parses `doctor hang RUN_DIR`.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>

#include "core/check.h"
#include "data/data_test_util.h"
#include "launcher/doctor_command.h"
#include "launcher/doctor_hang.h"

namespace tessera {
namespace {

using testing::TemporaryFolder;

// One rank's recorder, driven call by call.
class Rank {
 public:
  Rank(int rank, int world) : recorder_(std::make_unique<FlightRecorder>(rank, world)) {}
  int group(const std::string& name, const std::vector<int>& members) {
    int group_rank =
        static_cast<int>(std::find(members.begin(), members.end(), recorder_->global_rank()) - members.begin());
    return recorder_->add_group(name, members, group_rank);
  }
  // A collective that completes (or stays in flight, or fails).
  Rank& call(int group, const std::string& op, Shape shape, OpState state = OpState::Completed,
             const std::string& dtype = "f32", const std::string& error = "") {
    OpRecord record;
    record.op = op;
    record.reduce_op = op == "all_reduce" ? "sum" : "";
    record.dtype = dtype;
    record.shapes = {std::move(shape)};
    uint64_t id = recorder_->start(group, record);
    if (state != OpState::Started) recorder_->set_state(id, state, error);
    return *this;
  }
  Rank& p2p(int group, const std::string& op, int peer, OpState state = OpState::Completed) {
    OpRecord record;
    record.op = op;
    record.p2p = true;
    record.peer = peer;
    record.dtype = "f32";
    record.shapes = {{8}};
    uint64_t id = recorder_->start(group, record);
    if (state != OpState::Started) recorder_->set_state(id, state);
    return *this;
  }
  FlightDump dump() const { return recorder_->snapshot("test"); }

 private:
  std::unique_ptr<FlightRecorder> recorder_;  // held by pointer: a recorder does not move
};

std::vector<FlightDump> dumps_of(const std::vector<Rank>& ranks) {
  std::vector<FlightDump> dumps;
  for (const Rank& rank : ranks) dumps.push_back(rank.dump());
  return dumps;
}

const HangFinding* find(const HangDiagnosis& diagnosis, HangFindingKind kind, const std::string& group) {
  for (const HangFinding& finding : diagnosis.findings) {
    if (finding.kind == kind && finding.group == group) return &finding;
  }
  return nullptr;
}

bool contains(const std::string& text, const std::string& needle) { return text.find(needle) != std::string::npos; }

// Four ranks in one dp group: five all_reduces done, ranks 0-2 wait in the sixth, rank 3 is in
// no call.
std::vector<Rank> one_rank_never_entered() {
  std::vector<Rank> ranks;
  for (int r = 0; r < 4; ++r) {
    ranks.emplace_back(r, 4);
    int dp = ranks[r].group("dp", {0, 1, 2, 3});
    for (int i = 0; i < 5; ++i) ranks[r].call(dp, "all_reduce", {1024});
    if (r != 3) ranks[r].call(dp, "all_reduce", {1024}, OpState::Started);
  }
  return ranks;
}

TEST(DoctorHangTest, RankThatNeverEnteredIsTheLikelyCause) {
  HangDiagnosis diagnosis = diagnose_hang(dumps_of(one_rank_never_entered()));
  EXPECT_EQ(diagnosis.world_size, 4);
  EXPECT_EQ(diagnosis.dumped_ranks, (std::vector<int>{0, 1, 2, 3}));
  ASSERT_EQ(diagnosis.findings.size(), 1u) << diagnosis.text;
  const HangFinding& finding = diagnosis.findings[0];
  EXPECT_EQ(finding.kind, HangFindingKind::NeverEntered);
  EXPECT_EQ(finding.group, "dp[0,1,2,3]");
  EXPECT_EQ(finding.op, "all_reduce");
  EXPECT_EQ(finding.seq, 5);
  EXPECT_EQ(finding.culprits, (std::vector<int>{3}));
  EXPECT_EQ(finding.waiting, (std::vector<int>{0, 1, 2}));
  EXPECT_TRUE(finding.likely_cause);
  EXPECT_EQ(diagnosis.likely_culprits, (std::vector<int>{3}));
  EXPECT_TRUE(contains(finding.message,
                       "rank 3 never entered all_reduce #5 (sum, f32 [1024]) of group dp[0,1,2,3]; "
                       "ranks 0,1,2 wait in it"))
      << finding.message;
  EXPECT_TRUE(contains(finding.message, "rank 3 (group rank 3) is in no communication call")) << finding.message;
  EXPECT_TRUE(contains(finding.message, "its last call in this group: all_reduce #4 (sum, f32 [1024]), completed"))
      << finding.message;
  EXPECT_TRUE(contains(diagnosis.text, "likely cause: rank 3\n")) << diagnosis.text;
}

// tp 2 x dp 2 (tp groups {0,1}, {2,3}; dp groups {0,2}, {1,3}), one tp then one dp all_reduce
// per step; at step 2 rank 3 skips its dp all_reduce and stops. Rank 1 waits for it in dp #2,
// rank 0 waits for rank 1 in tp #3, rank 2 waits for rank 3 in tp #3.
TEST(DoctorHangTest, CauseIsToldApartFromItsConsequences) {
  std::vector<Rank> ranks;
  for (int r = 0; r < 4; ++r) ranks.emplace_back(r, 4);
  std::map<int, int> tp, dp;
  for (int r = 0; r < 4; ++r) {
    tp[r] = ranks[r].group("tp", r < 2 ? std::vector<int>{0, 1} : std::vector<int>{2, 3});
    dp[r] = ranks[r].group("dp", r % 2 == 0 ? std::vector<int>{0, 2} : std::vector<int>{1, 3});
  }
  for (int step = 0; step < 2; ++step) {
    for (int r = 0; r < 4; ++r) ranks[r].call(tp[r], "all_reduce", {64}).call(dp[r], "all_reduce", {256});
  }
  for (int r = 0; r < 4; ++r) ranks[r].call(tp[r], "all_reduce", {64});
  ranks[0].call(dp[0], "all_reduce", {256});
  ranks[2].call(dp[2], "all_reduce", {256});
  ranks[1].call(dp[1], "all_reduce", {256}, OpState::Started);
  ranks[0].call(tp[0], "all_reduce", {64}, OpState::Started);
  ranks[2].call(tp[2], "all_reduce", {64}, OpState::Started);

  HangDiagnosis diagnosis = diagnose_hang(dumps_of(ranks));
  EXPECT_EQ(diagnosis.likely_culprits, (std::vector<int>{3})) << diagnosis.text;
  const HangFinding* skipped = find(diagnosis, HangFindingKind::NeverEntered, "dp[1,3]");
  ASSERT_NE(skipped, nullptr) << diagnosis.text;
  EXPECT_EQ(skipped->seq, 2);
  EXPECT_EQ(skipped->culprits, (std::vector<int>{3}));
  EXPECT_EQ(skipped->waiting, (std::vector<int>{1}));
  EXPECT_TRUE(skipped->likely_cause);
  const HangFinding* partner = find(diagnosis, HangFindingKind::NeverEntered, "tp[2,3]");
  ASSERT_NE(partner, nullptr) << diagnosis.text;
  EXPECT_EQ(partner->seq, 3);
  EXPECT_TRUE(partner->likely_cause);
  const HangFinding* consequence = find(diagnosis, HangFindingKind::NeverEntered, "tp[0,1]");
  ASSERT_NE(consequence, nullptr) << diagnosis.text;
  EXPECT_EQ(consequence->culprits, (std::vector<int>{1}));
  EXPECT_FALSE(consequence->likely_cause);
  EXPECT_TRUE(contains(consequence->message,
                       "rank 1 (group rank 1) itself waits in all_reduce #2 (sum, f32 [256]) of group dp[1,3]"))
      << consequence->message;
  EXPECT_EQ(find(diagnosis, HangFindingKind::NeverEntered, "dp[0,2]"), nullptr);
  EXPECT_EQ(diagnosis.findings.back().kind, HangFindingKind::NeverEntered);  // consequences come last
  EXPECT_EQ(diagnosis.findings.back().group, "tp[0,1]");
}

TEST(DoctorHangTest, SizeMismatchNamesTheMinority) {
  std::vector<Rank> ranks;
  for (int r = 0; r < 4; ++r) {
    ranks.emplace_back(r, 4);
    int dp = ranks[r].group("dp", {0, 1, 2, 3});
    for (int i = 0; i < 3; ++i) ranks[r].call(dp, "all_reduce", {32, 32});
    ranks[r].call(dp, "all_reduce", r == 2 ? Shape{64, 32} : Shape{32, 32}, OpState::Started);
  }
  HangDiagnosis diagnosis = diagnose_hang(dumps_of(ranks));
  ASSERT_FALSE(diagnosis.findings.empty());
  const HangFinding& finding = diagnosis.findings[0];
  EXPECT_EQ(finding.kind, HangFindingKind::ArgumentMismatch) << diagnosis.text;
  EXPECT_EQ(finding.seq, 3);
  EXPECT_EQ(finding.op, "all_reduce");
  EXPECT_EQ(finding.culprits, (std::vector<int>{2}));
  EXPECT_EQ(finding.waiting, (std::vector<int>{0, 1, 3}));
  EXPECT_EQ(diagnosis.likely_culprits, (std::vector<int>{2}));
  EXPECT_TRUE(contains(finding.message,
                       "all_reduce #3 of group dp[0,1,2,3]: rank 2 (group rank 2) called all_reduce "
                       "(sum, f32 [64, 32]) while ranks 0,1,3 called all_reduce (sum, f32 [32, 32]): "
                       "element counts differ"))
      << finding.message;
  // Everyone entered #3: the stuck call is explained by the mismatch, not a second cause.
  const HangFinding* stuck = find(diagnosis, HangFindingKind::StuckTogether, "dp[0,1,2,3]");
  ASSERT_NE(stuck, nullptr) << diagnosis.text;
  EXPECT_FALSE(stuck->likely_cause);
}

TEST(DoctorHangTest, OpMismatchNamesTheOddRank) {
  std::vector<Rank> ranks;
  for (int r = 0; r < 3; ++r) {
    ranks.emplace_back(r, 3);
    int world = ranks[r].group("world", {0, 1, 2});
    ranks[r].call(world, "all_reduce", {4});
    ranks[r].call(world, r == 1 ? "all_gather" : "all_reduce", {4}, OpState::Started);
  }
  HangDiagnosis diagnosis = diagnose_hang(dumps_of(ranks));
  ASSERT_FALSE(diagnosis.findings.empty());
  EXPECT_EQ(diagnosis.findings[0].kind, HangFindingKind::OpMismatch) << diagnosis.text;
  EXPECT_EQ(diagnosis.findings[0].culprits, (std::vector<int>{1}));
  EXPECT_EQ(diagnosis.findings[0].seq, 1);
  EXPECT_TRUE(contains(diagnosis.findings[0].message, "rank 1 (group rank 1) called all_gather (f32 [4])"))
      << diagnosis.findings[0].message;
  EXPECT_TRUE(contains(diagnosis.findings[0].message, "the operations differ")) << diagnosis.findings[0].message;
}

TEST(DoctorHangTest, EvenSplitIsSettledByTheOtherGroupsOfTheSameRole) {
  std::vector<Rank> ranks;
  for (int r = 0; r < 4; ++r) {
    ranks.emplace_back(r, 4);
    int dp = ranks[r].group("dp", r % 2 == 0 ? std::vector<int>{0, 2} : std::vector<int>{1, 3});
    ranks[r].call(dp, "all_reduce", {16});
    ranks[r].call(dp, "all_reduce", {16}, r == 1 ? OpState::Started : OpState::Completed, r == 3 ? "bf16" : "f32");
  }
  HangDiagnosis diagnosis = diagnose_hang(dumps_of(ranks));
  ASSERT_FALSE(diagnosis.findings.empty());
  const HangFinding& finding = diagnosis.findings[0];
  EXPECT_EQ(finding.kind, HangFindingKind::ArgumentMismatch) << diagnosis.text;
  EXPECT_EQ(finding.group, "dp[1,3]");
  EXPECT_EQ(finding.culprits, (std::vector<int>{3}));
  EXPECT_TRUE(contains(finding.message, "dtypes differ")) << finding.message;
}

TEST(DoctorHangTest, UndecidableSplitNamesBothRanks) {
  std::vector<Rank> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back(r, 2);
    int pair = ranks[r].group("pair", {0, 1});
    ranks[r].call(pair, "broadcast", {r == 0 ? 10 : 20}, OpState::Started);
  }
  HangDiagnosis diagnosis = diagnose_hang(dumps_of(ranks));
  ASSERT_FALSE(diagnosis.findings.empty());
  EXPECT_EQ(diagnosis.findings[0].kind, HangFindingKind::ArgumentMismatch);
  EXPECT_EQ(diagnosis.findings[0].culprits, (std::vector<int>{0, 1}));
  EXPECT_TRUE(contains(diagnosis.findings[0].message, "no majority tells which is odd"))
      << diagnosis.findings[0].message;
}

TEST(DoctorHangTest, DeadRankIsReportedAndBlamed) {
  std::vector<Rank> ranks = one_rank_never_entered();
  ranks.pop_back();  // rank 3 left no dump
  HangDiagnosis diagnosis = diagnose_hang(dumps_of(ranks));
  EXPECT_EQ(diagnosis.world_size, 4);
  const HangFinding* missing = find(diagnosis, HangFindingKind::MissingDump, "");
  ASSERT_NE(missing, nullptr) << diagnosis.text;
  EXPECT_EQ(missing->culprits, (std::vector<int>{3}));
  EXPECT_TRUE(contains(missing->message, "rank 3 wrote no dump")) << missing->message;
  const HangFinding* absent = find(diagnosis, HangFindingKind::NeverEntered, "dp[0,1,2,3]");
  ASSERT_NE(absent, nullptr);
  EXPECT_TRUE(contains(absent->message, "rank 3 (group rank 3) left no dump")) << absent->message;
  EXPECT_EQ(diagnosis.likely_culprits, (std::vector<int>{3}));
}

TEST(DoctorHangTest, ReceiveThatWasNeverSentBlamesTheIdleSender) {
  std::vector<Rank> ranks;
  ranks.emplace_back(0, 2);
  ranks.emplace_back(1, 2);
  int pp0 = ranks[0].group("pp", {0, 1}), pp1 = ranks[1].group("pp", {0, 1});
  for (int i = 0; i < 2; ++i) {
    ranks[0].p2p(pp0, "send", 1);
    ranks[1].p2p(pp1, "recv", 0);
  }
  ranks[1].p2p(pp1, "recv", 0, OpState::Started);
  HangDiagnosis diagnosis = diagnose_hang(dumps_of(ranks));
  ASSERT_FALSE(diagnosis.findings.empty());
  const HangFinding& finding = diagnosis.findings[0];
  EXPECT_EQ(finding.kind, HangFindingKind::UnmatchedP2p) << diagnosis.text;
  EXPECT_EQ(finding.culprits, (std::vector<int>{0}));
  EXPECT_EQ(finding.waiting, (std::vector<int>{1}));
  EXPECT_EQ(finding.seq, 2);
  EXPECT_TRUE(finding.likely_cause);
  EXPECT_TRUE(contains(finding.message, "rank 1 waits in recv #2 from group rank 0 (tag 0, f32 [8]) of group pp[0,1]"))
      << finding.message;
  EXPECT_TRUE(contains(finding.message, "rank 0 (group rank 0) has sent only 2 messages to it")) << finding.message;
}

TEST(DoctorHangTest, FailedCallIsQuoted) {
  std::vector<Rank> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back(r, 2);
    int dp = ranks[r].group("dp", {0, 1});
    ranks[r].call(dp, "all_reduce", {8});
  }
  ranks[0].call(0, "all_reduce", {8}, OpState::Failed, "f32", "MPI_ERR_TRUNCATE: message truncated");
  ranks[1].call(0, "all_reduce", {8}, OpState::Started);
  HangDiagnosis diagnosis = diagnose_hang(dumps_of(ranks));
  const HangFinding* failed = find(diagnosis, HangFindingKind::FailedOp, "dp[0,1]");
  ASSERT_NE(failed, nullptr) << diagnosis.text;
  EXPECT_EQ(failed->culprits, (std::vector<int>{0}));
  EXPECT_TRUE(contains(failed->message,
                       "rank 0: all_reduce #1 (sum, f32 [8]) of group dp[0,1] failed: "
                       "MPI_ERR_TRUNCATE: message truncated"))
      << failed->message;
  EXPECT_EQ(diagnosis.likely_culprits, (std::vector<int>{0}));
}

TEST(DoctorHangTest, HealthyRunShowsNoHang) {
  std::vector<Rank> ranks;
  for (int r = 0; r < 2; ++r) {
    ranks.emplace_back(r, 2);
    int world = ranks[r].group("world", {0, 1});
    ranks[r].call(world, "all_reduce", {8}).call(world, "barrier", {});
  }
  HangDiagnosis diagnosis = diagnose_hang(dumps_of(ranks));
  EXPECT_TRUE(diagnosis.findings.empty()) << diagnosis.text;
  EXPECT_TRUE(diagnosis.likely_culprits.empty());
  EXPECT_TRUE(contains(diagnosis.text, "the dumps show no hang")) << diagnosis.text;
}

TEST(DoctorHangTest, ReadsTheDumpFolderOfARunAndRefusesBadOnes) {
  TemporaryFolder run;
  try {
    load_flight_dumps(run.path());
    ADD_FAILURE() << "an empty run folder was accepted";
  } catch (const Error& error) {
    EXPECT_TRUE(contains(error.what(), "no flight-recorder dumps (rank_<N>.json)")) << error.what();
  }
  for (const Rank& rank : one_rank_never_entered()) {
    FlightDump dump = rank.dump();
    write_flight_dump(dump, run.path() / "flight_recorder" / flight_dump_file_name(dump.global_rank));
  }
  EXPECT_EQ(find_flight_dump_dir(run.path()), run.path() / "flight_recorder");
  EXPECT_EQ(find_flight_dump_dir(run.path() / "flight_recorder"), run.path() / "flight_recorder");
  HangDiagnosis diagnosis = diagnose_hang(load_flight_dumps(run.path()));
  EXPECT_EQ(diagnosis.likely_culprits, (std::vector<int>{3}));

  DoctorOptions options;
  CLI::App app;
  add_doctor_subcommand(app, options);
  app.parse(std::vector<std::string>{run.path().string(), "hang", "doctor"});  // CLI11 takes them reversed
  EXPECT_EQ(options.hang_run_dir, run.path().string());
  EXPECT_EQ(run_doctor_command(options), 0);

  std::filesystem::rename(run.path() / "flight_recorder" / "rank_3.json",
                          run.path() / "flight_recorder" / "rank_7.json");
  try {
    load_flight_dumps(run.path());
    ADD_FAILURE() << "a misnamed dump was accepted";
  } catch (const Error& error) {
    EXPECT_TRUE(contains(error.what(), "rank_7.json holds the dump of rank 3")) << error.what();
  }
  try {
    load_flight_dumps(run.path() / "missing");
    ADD_FAILURE() << "a missing folder was accepted";
  } catch (const Error& error) {
    EXPECT_TRUE(contains(error.what(), "is not a folder")) << error.what();
  }
}

TEST(DoctorHangTest, DoctorNeedsItsCheckName) {
  DoctorOptions options;
  CLI::App app;
  add_doctor_subcommand(app, options);
  EXPECT_THROW(app.parse(std::vector<std::string>{"doctor"}), CLI::ParseError);
}

}  // namespace
}  // namespace tessera
