// FlightRecorder through MonitoredCommunicator, run as 2 and 4 real ranks: after a known
// sequence of operations (every collective, an async call, a send/recv ring, a split and a call
// on the child group) the recorder holds exactly that sequence, written out here by hand: ops,
// groups and their members, per-group sequence numbers, p2p counters, dtypes, shapes and
// states. Also: a failed call is recorded as failed and rethrown, the ring keeps the last N
// entries while the counters stay exact, an unwaited async call is the oldest in flight, and a
// dump reads back field for field; broken dump files are refused naming the file and the key.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "parallel/monitored_communicator.h"
#include "parallel/mpi_communicator.h"

namespace tessera {
namespace {

class TemporaryFolder {
 public:
  TemporaryFolder() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tessera-flight-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TemporaryFolder() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

class FlightRecorderTest : public ::testing::Test {
 protected:
  std::unique_ptr<MonitoredCommunicator> monitored_world(size_t capacity = FlightRecorder::kDefaultCapacity) {
    recorder_ = std::make_shared<FlightRecorder>(rank_, size_, capacity);
    return std::make_unique<MonitoredCommunicator>(std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, "world"),
                                                   recorder_);
  }

  int rank_ = [] {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
  }();
  int size_ = [] {
    int size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    return size;
  }();
  std::shared_ptr<FlightRecorder> recorder_;
};

struct Expected {
  int group;
  bool p2p;
  int64_t seq;
  std::string op;
  std::string reduce_op;
  std::string dtype;
  std::vector<Shape> shapes;
  int peer;
};

TEST_F(FlightRecorderTest, RecordsAKnownSequenceOfOperations) {
  auto world = monitored_world();
  int next = (rank_ + 1) % size_, previous = (rank_ + size_ - 1) % size_;

  Tensor sum = Tensor::full({5}, rank_ + 1.0);
  world->all_reduce(sum, ReduceOp::Sum);
  EXPECT_EQ(sum.to_vector<float>()[0], size_ * (size_ + 1) / 2.0f);  // the call still does its job
  Tensor in = Tensor::full({2, 3}, rank_, DType::F64), out = Tensor::zeros({2 * size_, 3}, DType::F64);
  world->all_gather(in, out);
  Tensor root_value = Tensor::full({4}, rank_, DType::I32);
  world->broadcast(root_value, size_ - 1);
  Tensor async_max = Tensor::full({7}, rank_, DType::BF16);
  auto handle = world->all_reduce_async(async_max, ReduceOp::Max);
  EXPECT_EQ(recorder_->snapshot("test").records.back().state, OpState::Scheduled);
  handle->wait();
  EXPECT_EQ(recorder_->snapshot("test").records.back().state, OpState::Completed);
  Tensor message = Tensor::full({3}, rank_), received = Tensor::zeros({3});
  if (rank_ % 2 == 0) {
    world->send(message, next, 7);
    world->recv(received, previous, 7);
  } else {
    world->recv(received, previous, 7);
    world->send(message, next, 7);
  }
  EXPECT_EQ(received.to_vector<float>()[0], previous);
  world->barrier();
  auto half = world->split(rank_ % 2, rank_, "half");
  Tensor half_sum = Tensor::ones({2, 2});
  half->all_reduce(half_sum, ReduceOp::Sum);

  int group_next = next, group_previous = previous;  // world group ranks are global ranks
  std::vector<Expected> expected = {
      {0, false, 0, "all_reduce", "sum", "f32", {{5}}, -1},
      {0, false, 1, "all_gather", "", "f64", {{2, 3}, {2 * size_, 3}}, -1},
      {0, false, 2, "broadcast", "", "i32", {{4}}, size_ - 1},
      {0, false, 3, "all_reduce", "max", "bf16", {{7}}, -1},
  };
  Expected send{0, true, 0, "send", "", "f32", {{3}}, group_next};
  Expected recv{0, true, 0, "recv", "", "f32", {{3}}, group_previous};
  if (rank_ % 2 == 0) {
    expected.push_back(send);
    expected.push_back(recv);
  } else {
    expected.push_back(recv);
    expected.push_back(send);
  }
  expected.push_back({0, false, 4, "barrier", "", "", {}, -1});
  expected.push_back({0, false, 5, "split", "", "", {}, -1});
  expected.push_back({1, false, 0, "all_reduce", "sum", "f32", {{2, 2}}, -1});

  FlightDump dump = recorder_->snapshot("after the sequence");
  ASSERT_EQ(dump.records.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const OpRecord& got = dump.records[i];
    SCOPED_TRACE("record " + std::to_string(i) + ": " + describe_op(got));
    EXPECT_EQ(got.id, i);
    EXPECT_EQ(got.group, expected[i].group);
    EXPECT_EQ(got.p2p, expected[i].p2p);
    EXPECT_EQ(got.seq, expected[i].seq);
    EXPECT_EQ(got.op, expected[i].op);
    EXPECT_EQ(got.reduce_op, expected[i].reduce_op);
    EXPECT_EQ(got.dtype, expected[i].dtype);
    EXPECT_EQ(got.shapes, expected[i].shapes);
    EXPECT_EQ(got.peer, expected[i].peer);
    EXPECT_EQ(got.state, OpState::Completed);
    EXPECT_GE(got.seconds, 0.0);
    if (got.p2p) {
      EXPECT_EQ(got.tag, 7);
    }
    if (i > 0) {
      EXPECT_GE(got.start_unix_us, dump.records[i - 1].start_unix_us);
    }
  }

  ASSERT_EQ(dump.groups.size(), 2u);
  std::vector<int> everyone, same_parity;
  for (int r = 0; r < size_; ++r) {
    everyone.push_back(r);
    if (r % 2 == rank_ % 2) same_parity.push_back(r);
  }
  EXPECT_EQ(dump.groups[0].members, everyone);
  EXPECT_EQ(dump.groups[0].group_rank, rank_);
  EXPECT_EQ(dump.groups[0].collectives, 6);
  EXPECT_EQ(dump.groups[0].sends, (std::vector<std::pair<int, int64_t>>{{group_next, 1}}));
  EXPECT_EQ(dump.groups[0].recvs, (std::vector<std::pair<int, int64_t>>{{group_previous, 1}}));
  EXPECT_EQ(dump.groups[0].key(), "world" + ranks_text(everyone));
  EXPECT_EQ(dump.groups[1].name, "half");
  EXPECT_EQ(dump.groups[1].members, same_parity);
  EXPECT_EQ(dump.groups[1].group_rank, rank_ / 2);
  EXPECT_EQ(dump.groups[1].collectives, 1);
  EXPECT_EQ(dump.total_records, expected.size());
  EXPECT_EQ(dump.global_rank, rank_);
  EXPECT_EQ(dump.world_size, size_);
  EXPECT_EQ(dump.reason, "after the sequence");
}

TEST_F(FlightRecorderTest, FailedCallIsRecordedAndRethrown) {
  auto world = monitored_world();
  Tensor in = Tensor::ones({2}), wrong_out = Tensor::zeros({3});
  EXPECT_THROW(world->all_gather(in, wrong_out), Error);  // thrown on every rank before any message
  Tensor sum = Tensor::ones({1});
  world->all_reduce(sum, ReduceOp::Sum);
  FlightDump dump = recorder_->snapshot("test");
  ASSERT_EQ(dump.records.size(), 2u);
  EXPECT_EQ(dump.records[0].state, OpState::Failed);
  EXPECT_NE(dump.records[0].error.find("all_gather on group 'world'"), std::string::npos) << dump.records[0].error;
  EXPECT_EQ(dump.records[1].seq, 1);
  EXPECT_EQ(dump.records[1].state, OpState::Completed);
}

TEST_F(FlightRecorderTest, RingKeepsTheLastEntriesAndExactCounters) {
  auto world = monitored_world(4);
  for (int i = 0; i < 6; ++i) {
    Tensor tensor = Tensor::full({i + 1}, 1.0);
    world->all_reduce(tensor, ReduceOp::Sum);
  }
  FlightDump dump = recorder_->snapshot("test");
  ASSERT_EQ(dump.records.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(dump.records[i].id, static_cast<uint64_t>(i + 2));
    EXPECT_EQ(dump.records[i].seq, i + 2);
    EXPECT_EQ(dump.records[i].shapes, (std::vector<Shape>{{i + 3}}));
  }
  EXPECT_EQ(dump.total_records, 6u);
  EXPECT_EQ(dump.capacity, 4);
  EXPECT_EQ(dump.groups[0].collectives, 6);
}

TEST_F(FlightRecorderTest, UnwaitedAsyncCallIsTheOldestInFlight) {
  auto world = monitored_world();
  Tensor done = Tensor::ones({3});
  world->all_reduce(done, ReduceOp::Sum);
  EXPECT_FALSE(recorder_->oldest_in_flight().has_value());
  Tensor pending = Tensor::ones({3});
  auto handle = world->all_reduce_async(pending, ReduceOp::Sum);
  auto oldest = recorder_->oldest_in_flight();
  ASSERT_TRUE(oldest.has_value());
  EXPECT_EQ(oldest->first.op, "all_reduce");
  EXPECT_EQ(oldest->first.seq, 1);
  EXPECT_EQ(oldest->first.state, OpState::Scheduled);
  EXPECT_EQ(oldest->second.name, "world");
  handle.reset();  // destroying an unwaited handle waits, and records the completion
  EXPECT_FALSE(recorder_->oldest_in_flight().has_value());
  EXPECT_EQ(recorder_->snapshot("test").records.back().state, OpState::Completed);
}

TEST_F(FlightRecorderTest, DumpReadsBackFieldForField) {
  auto world = monitored_world();
  Tensor tensor = Tensor::ones({2, 5}, DType::F64);
  world->all_reduce(tensor, ReduceOp::Avg);
  OpRecord in_flight;
  in_flight.op = "all_to_all";
  in_flight.dtype = "i64";
  in_flight.shapes = {{4}, {4}};
  recorder_->start(0, in_flight);  // left in flight
  TemporaryFolder folder;
  std::filesystem::path path = recorder_->dump(folder.path() / "flight_recorder", "unit test");
  EXPECT_EQ(path, folder.path() / "flight_recorder" / ("rank_" + std::to_string(rank_) + ".json"));
  FlightDump written = recorder_->snapshot("unit test");
  FlightDump read = read_flight_dump(path);
  EXPECT_EQ(read.global_rank, rank_);
  EXPECT_EQ(read.world_size, size_);
  EXPECT_EQ(read.reason, "unit test");
  EXPECT_EQ(read.hostname, written.hostname);
  EXPECT_EQ(read.pid, written.pid);
  EXPECT_EQ(read.total_records, 2u);
  ASSERT_EQ(read.groups.size(), 1u);
  EXPECT_EQ(read.groups[0].key(), written.groups[0].key());
  EXPECT_EQ(read.groups[0].collectives, 2);
  ASSERT_EQ(read.records.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(read.records[i].id, written.records[i].id);
    EXPECT_EQ(read.records[i].seq, written.records[i].seq);
    EXPECT_EQ(read.records[i].op, written.records[i].op);
    EXPECT_EQ(read.records[i].reduce_op, written.records[i].reduce_op);
    EXPECT_EQ(read.records[i].dtype, written.records[i].dtype);
    EXPECT_EQ(read.records[i].shapes, written.records[i].shapes);
    EXPECT_EQ(read.records[i].state, written.records[i].state);
    EXPECT_EQ(read.records[i].start_unix_us, written.records[i].start_unix_us);
  }
  EXPECT_EQ(read.records[0].reduce_op, "avg");
  EXPECT_EQ(read.records[1].state, OpState::Started);
  EXPECT_GE(read.records[1].seconds, 0.0);
}

TEST_F(FlightRecorderTest, BrokenDumpFilesAreRefusedNamingFileAndKey) {
  TemporaryFolder folder;
  auto expect_error = [&](const std::string& content, const std::string& needle) {
    std::filesystem::path path = folder.path() / "rank_0.json";
    std::ofstream(path) << content;
    try {
      read_flight_dump(path);
      ADD_FAILURE() << "no error for " << content;
    } catch (const Error& error) {
      std::string message = error.what();
      EXPECT_NE(message.find(path.string()), std::string::npos) << message;
      EXPECT_NE(message.find(needle), std::string::npos) << message;
    }
  };
  expect_error("{\"format\": \"tessera-flight-recorder-1\", \"global_rank\": 0", "not valid JSON");
  expect_error("{\"format\": \"something-else\"}", "format 'something-else'");
  expect_error("{\"format\": \"tessera-flight-recorder-1\", \"global_rank\": 0}", "missing key 'world_size'");
  expect_error("{\"format\": \"tessera-flight-recorder-1\", \"global_rank\": \"zero\"}", "key 'global_rank'");
}

}  // namespace
}  // namespace tessera
