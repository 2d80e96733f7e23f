// Watchdog over real ranks (2 and 4). A call left in flight past the timeout makes the
// watchdog name it (op, sequence number, group, group rank, members), dump, and call the abort
// callback; completed calls never do. A dump request written by one rank reaches every rank's
// watchdog through the shared folder; abort_job() waits until every rank has dumped. SIGUSR1
// dumps; SIGTERM dumps and still runs the handler installed before. A stale dump of an earlier
// run is removed at start. Waits for the watchdog thread are bounded (a failure, not a hang),
// never timed assertions.
#include "parallel/watchdog.h"

#include <gtest/gtest.h>
#include <mpi.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/check.h"

namespace tessera {
namespace {

using namespace std::chrono_literals;

int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

int world_size() {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

// A folder every rank shares: rank 0 makes it, the others learn its name.
class SharedFolder {
 public:
  SharedFolder() {
    char name[256] = {};
    if (world_rank() == 0) {
      std::string pattern = (std::filesystem::temp_directory_path() / "tessera-watchdog-XXXXXX").string();
      std::snprintf(name, sizeof(name), "%s", ::mkdtemp(pattern.data()));
    }
    MPI_Bcast(name, sizeof(name), MPI_CHAR, 0, MPI_COMM_WORLD);
    path_ = name;
  }
  ~SharedFolder() {
    MPI_Barrier(MPI_COMM_WORLD);
    std::error_code ignored;
    if (world_rank() == 0) std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Polls until `done` or 20 s (the watchdog thread polls every few ms here).
template <typename Condition>
bool eventually(Condition done) {
  for (int i = 0; i < 2000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return done();
}

struct Captured {
  std::mutex mutex;
  std::vector<std::string> lines;
  std::promise<std::string> aborted;
  void log(const std::string& line) {
    std::lock_guard lock(mutex);
    lines.push_back(line);
  }
  bool logged(const std::string& needle) {
    std::lock_guard lock(mutex);
    for (const std::string& line : lines) {
      if (line.find(needle) != std::string::npos) return true;
    }
    return false;
  }
};

WatchdogOptions fast_options(const std::filesystem::path& dir, Captured& captured) {
  WatchdogOptions options;
  options.timeout = 10min;
  options.poll_interval = 5ms;
  options.request_poll_interval = 5ms;
  options.dump_grace = 20s;
  options.dump_dir = dir;
  options.dump_on_sigusr1 = false;
  options.log = [&captured](const std::string& line) { captured.log(line); };
  options.abort = [&captured](const std::string& reason) { captured.aborted.set_value(reason); };
  return options;
}

std::shared_ptr<FlightRecorder> recorder_with_dp_group() {
  auto recorder = std::make_shared<FlightRecorder>(world_rank(), world_size());
  std::vector<int> members;
  for (int r = 0; r < world_size(); ++r) members.push_back(r);
  recorder->add_group("dp", members, world_rank());
  return recorder;
}

OpRecord all_reduce_record() {
  OpRecord record;
  record.op = "all_reduce";
  record.reduce_op = "sum";
  record.dtype = "f32";
  record.shapes = {{16}};
  return record;
}

TEST(WatchdogTest, TimeoutNamesTheStuckCallDumpsAndAborts) {
  SharedFolder folder;
  std::filesystem::path dir = folder.path() / ("alone_" + std::to_string(world_rank()));
  auto recorder = recorder_with_dp_group();
  recorder->set_state(recorder->start(0, all_reduce_record()), OpState::Completed);
  recorder->start(0, all_reduce_record());  // never completes
  Captured captured;
  WatchdogOptions options = fast_options(dir, captured);
  options.timeout = 10s;
  options.dump_grace = 0ms;  // alone in its folder: the other ranks' dumps never come
  std::future<std::string> aborted = captured.aborted.get_future();
  Watchdog watchdog(recorder, options);
  watchdog.set_timeout(200ms);
  ASSERT_EQ(aborted.wait_for(20s), std::future_status::ready);
  std::string reason = aborted.get();
  std::string where = "all_reduce #1 (sum, f32 [16]) on group 'dp' (group rank " + std::to_string(world_rank()) +
                      " of " + std::to_string(world_size()) + ", members [";
  EXPECT_NE(reason.find(where), std::string::npos) << reason;
  EXPECT_NE(reason.find("has not completed after"), std::string::npos) << reason;
  EXPECT_NE(reason.find("(timeout 0.2 s)"), std::string::npos) << reason;
  EXPECT_TRUE(captured.logged("watchdog: rank " + std::to_string(world_rank()) + " aborts the job: " + reason));
  FlightDump dump = read_flight_dump(dir / flight_dump_file_name(world_rank()));
  EXPECT_EQ(dump.reason, reason);
  ASSERT_EQ(dump.records.size(), 2u);
  EXPECT_EQ(dump.records[1].state, OpState::Started);
}

TEST(WatchdogTest, CompletedCallsNeverTrigger) {
  auto recorder = recorder_with_dp_group();
  for (int i = 0; i < 3; ++i) recorder->set_state(recorder->start(0, all_reduce_record()), OpState::Completed);
  Captured captured;
  WatchdogOptions options = fast_options({}, captured);
  options.timeout = 1ms;
  std::future<std::string> aborted = captured.aborted.get_future();
  {
    Watchdog watchdog(recorder, options);
    std::this_thread::sleep_for(100ms);  // twenty polls
  }
  EXPECT_EQ(aborted.wait_for(0s), std::future_status::timeout);
}

// A stream-ordered backend (NCCL) returns from wait() before the device has run the operation:
// the entry stays in flight until its device query says done, so a hang on the device times out
// naming it, and an operation the device finishes in time completes.
TEST(WatchdogTest, OperationsPendingOnTheDeviceAreWatchedUntilTheDeviceFinishesThem) {
  SharedFolder folder;
  auto recorder = recorder_with_dp_group();
  std::atomic<bool> first_done{false};
  const uint64_t finished_later = recorder->start(0, all_reduce_record());
  recorder->set_device_pending(finished_later, [&first_done] { return first_done.load(); });
  const uint64_t hung = recorder->start(0, all_reduce_record());
  recorder->set_device_pending(hung, [] { return false; });
  recorder->poll_device_completions();
  ASSERT_TRUE(recorder->oldest_in_flight().has_value());
  EXPECT_EQ(recorder->oldest_in_flight()->first.id, finished_later);
  EXPECT_EQ(recorder->oldest_in_flight()->first.state, OpState::Scheduled);
  first_done = true;
  recorder->poll_device_completions();
  EXPECT_EQ(recorder->snapshot("test").records[0].state, OpState::Completed);
  ASSERT_TRUE(recorder->oldest_in_flight().has_value());
  EXPECT_EQ(recorder->oldest_in_flight()->first.id, hung);

  Captured captured;
  WatchdogOptions options = fast_options(folder.path() / ("device_" + std::to_string(world_rank())), captured);
  options.dump_grace = 0ms;
  std::future<std::string> aborted = captured.aborted.get_future();
  Watchdog watchdog(recorder, options);
  watchdog.set_timeout(200ms);
  ASSERT_EQ(aborted.wait_for(20s), std::future_status::ready);
  EXPECT_NE(aborted.get().find("all_reduce #1 (sum, f32 [16]) on group 'dp'"), std::string::npos);
}

TEST(WatchdogTest, DumpRequestReachesEveryRankAndStaleDumpsAreRemoved) {
  SharedFolder folder;
  std::filesystem::path own = folder.path() / flight_dump_file_name(world_rank());
  std::ofstream(own) << "stale dump of an earlier run";
  auto recorder = recorder_with_dp_group();
  recorder->start(0, all_reduce_record());
  Captured captured;
  Watchdog watchdog(recorder, fast_options(folder.path(), captured));
  EXPECT_FALSE(std::filesystem::exists(own));
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) request_flight_dumps(folder.path(), "operator asked");
  ASSERT_TRUE(eventually([&] { return std::filesystem::exists(own); }));
  FlightDump dump = read_flight_dump(own);
  EXPECT_EQ(dump.reason, "requested: operator asked");
  EXPECT_EQ(dump.records.size(), 1u);
  EXPECT_TRUE(captured.logged("dumped to " + own.string()));
}

TEST(WatchdogTest, AbortJobWaitsUntilEveryRankHasDumped) {
  SharedFolder folder;
  auto recorder = recorder_with_dp_group();
  Captured captured;
  std::future<std::string> aborted = captured.aborted.get_future();
  Watchdog watchdog(recorder, fast_options(folder.path(), captured));
  MPI_Barrier(MPI_COMM_WORLD);
  if (world_rank() == 0) {
    watchdog.abort_job("rank 0 failed: test");
    for (int r = 0; r < world_size(); ++r) {
      EXPECT_TRUE(std::filesystem::exists(folder.path() / flight_dump_file_name(r))) << "rank " << r;
    }
    EXPECT_TRUE(captured.logged("all " + std::to_string(world_size()) + " ranks dumped"));
    EXPECT_EQ(aborted.get(), "rank 0 failed: test");
    EXPECT_EQ(read_flight_dump(folder.path() / "rank_0.json").reason, "rank 0 failed: test");
  } else {
    std::filesystem::path own = folder.path() / flight_dump_file_name(world_rank());
    ASSERT_TRUE(eventually([&] { return std::filesystem::exists(own); }));
    EXPECT_EQ(read_flight_dump(own).reason, "requested: rank 0: rank 0 failed: test");
  }
}

TEST(WatchdogTest, Sigusr1Dumps) {
  SharedFolder folder;
  std::filesystem::path dir = folder.path() / ("signal_" + std::to_string(world_rank()));
  Captured captured;
  WatchdogOptions options = fast_options(dir, captured);
  options.dump_on_sigusr1 = true;
  Watchdog watchdog(recorder_with_dp_group(), options);
  std::raise(SIGUSR1);
  std::filesystem::path own = dir / flight_dump_file_name(world_rank());
  ASSERT_TRUE(eventually([&] { return std::filesystem::exists(own); }));
  EXPECT_EQ(read_flight_dump(own).reason, "signal SIGUSR1");
}

std::atomic<int> test_term_handler_calls{0};
void test_term_handler(int) { test_term_handler_calls.fetch_add(1); }

TEST(WatchdogTest, SigtermDumpsAndRunsThePreviousHandler) {
  SharedFolder folder;
  std::filesystem::path dir = folder.path() / ("term_" + std::to_string(world_rank()));
  struct sigaction test_action = {}, saved = {};
  test_action.sa_handler = test_term_handler;
  sigemptyset(&test_action.sa_mask);
  ASSERT_EQ(sigaction(SIGTERM, &test_action, &saved), 0);
  {
    Captured captured;
    WatchdogOptions options = fast_options(dir, captured);
    options.dump_on_sigterm = true;
    Watchdog watchdog(recorder_with_dp_group(), options);
    std::raise(SIGTERM);
    EXPECT_EQ(test_term_handler_calls.load(), 1);
    std::filesystem::path own = dir / flight_dump_file_name(world_rank());
    ASSERT_TRUE(eventually([&] { return std::filesystem::exists(own); }));
    EXPECT_EQ(read_flight_dump(own).reason, "signal SIGTERM");
  }
  struct sigaction restored = {};
  sigaction(SIGTERM, &saved, &restored);
  EXPECT_EQ(restored.sa_handler, &test_term_handler);  // the watchdog put it back
}

TEST(WatchdogTest, RefusesBadOptionsAndASecondSignalOwner) {
  auto recorder = recorder_with_dp_group();
  Captured captured;
  WatchdogOptions no_abort = fast_options({}, captured);
  no_abort.abort = nullptr;
  try {
    Watchdog watchdog(recorder, no_abort);
    ADD_FAILURE() << "a watchdog without an abort callback was accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("options.abort is required"), std::string::npos) << error.what();
  }
  WatchdogOptions with_signals = fast_options({}, captured);
  with_signals.dump_on_sigusr1 = true;
  Watchdog first(recorder, with_signals);
  try {
    Watchdog second(recorder, with_signals);
    ADD_FAILURE() << "two watchdogs own SIGUSR1";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("already handles SIGUSR1/SIGTERM"), std::string::npos) << error.what();
  }
  Watchdog quiet(recorder, fast_options({}, captured));  // without signals: any number
}

}  // namespace
}  // namespace tessera
