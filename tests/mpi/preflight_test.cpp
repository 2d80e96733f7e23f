// Pre-flight check over real ranks (2 and 4): every group of the layout is reported in role
// order with its size (from the layout, not from the check), groups of one rank are skipped,
// timings are positive; a communicator that corrupts one element of float all_reduces on one
// rank makes the check throw on every rank, naming the group and the element (and the rank,
// where it is not the one that saw it); and a
// check over a monitored world leaves exactly its all_reduces in the flight recorder.
#include "parallel/preflight.h"

#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "parallel/monitored_communicator.h"
#include "parallel/mpi_communicator.h"

namespace tessera {
namespace {

// Forwards to MPI, but on group rank `victim` adds 1 to element 3 of every f32 all_reduce result.
class CorruptingCommunicator final : public Communicator {
 public:
  explicit CorruptingCommunicator(int victim) : victim_(victim) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  const std::string& name() const override { return name_; }
  Device device() const override { return inner_.device(); }
  std::unique_ptr<Communicator> split(int color, int key, std::string name) const override {
    return inner_.split(color, key, std::move(name));
  }
  void all_reduce(Tensor& tensor, ReduceOp op) override {
    inner_.all_reduce(tensor, op);
    if (rank() == victim_ && tensor.dtype() == DType::F32 && tensor.numel() > 3) {
      tensor.narrow(0, 3, 1).add_(Tensor::ones({1}));
    }
  }
  void all_gather(const Tensor& in, Tensor& out) override { inner_.all_gather(in, out); }
  void reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) override { inner_.reduce_scatter(in, out, op); }
  void broadcast(Tensor& tensor, int root) override { inner_.broadcast(tensor, root); }
  void send(const Tensor& tensor, int peer, int tag) override { inner_.send(tensor, peer, tag); }
  void recv(Tensor& tensor, int peer, int tag) override { inner_.recv(tensor, peer, tag); }
  void all_to_all(const Tensor& in, Tensor& out) override { inner_.all_to_all(in, out); }
  void barrier() override { inner_.barrier(); }
  std::unique_ptr<WorkHandle> all_reduce_async(Tensor& tensor, ReduceOp op) override {
    return inner_.all_reduce_async(tensor, op);
  }
  std::unique_ptr<WorkHandle> all_gather_async(const Tensor& in, Tensor& out) override {
    return inner_.all_gather_async(in, out);
  }
  std::unique_ptr<WorkHandle> reduce_scatter_async(const Tensor& in, Tensor& out, ReduceOp op) override {
    return inner_.reduce_scatter_async(in, out, op);
  }
  std::unique_ptr<WorkHandle> batch_send_recv(std::vector<P2pOp> ops) override {
    return inner_.batch_send_recv(std::move(ops));
  }

 private:
  MpiCommunicator inner_{MPI_COMM_WORLD, "corrupt"};
  std::string name_ = "corrupt";
  int victim_;
};

PreflightOptions small_options() {
  PreflightOptions options;
  options.bandwidth_bytes = 64 << 10;
  options.latency_iterations = 3;
  options.bandwidth_iterations = 2;
  return options;
}

TEST(PreflightTest, ReportsEveryGroupOfTheLayoutInRoleOrder) {
  MpiCommunicator world(MPI_COMM_WORLD, "world");
  ParallelLayout layout;
  layout.tp = 2;
  layout.dp = world.size() / 2;
  ProcessGroups groups(world, layout);
  std::vector<std::string> lines;
  auto results = preflight_check(
      world, groups, [&](const std::string& line) { lines.push_back(line); }, small_options());

  std::vector<std::pair<std::string, int>> expected = {
      {"world", world.size()}, {"tp", layout.tp}, {"cp", 1}, {"dp", layout.dp}, {"pp", 1}};
  ASSERT_EQ(results.size(), expected.size());
  ASSERT_EQ(lines.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    const PreflightResult& result = results[i];
    SCOPED_TRACE(lines[i]);
    EXPECT_EQ(result.group, expected[i].first);
    EXPECT_EQ(result.size, expected[i].second);
    EXPECT_EQ(result.skipped, expected[i].second == 1);
    EXPECT_NE(lines[i].find("group '" + expected[i].first + "' (" + std::to_string(expected[i].second) + " rank"),
              std::string::npos);
    if (result.skipped) {
      EXPECT_NE(lines[i].find("skipped"), std::string::npos);
      continue;
    }
    EXPECT_NE(lines[i].find(": ok, latency"), std::string::npos);
    EXPECT_NE(lines[i].find("GB/s (64 KiB)"), std::string::npos);
    EXPECT_EQ(result.latency_bytes, 32);
    EXPECT_EQ(result.bandwidth_bytes, 64 << 10);
    EXPECT_GT(result.latency_s, 0.0);
    EXPECT_GT(result.bandwidth_s, 0.0);
    double factor = 2.0 * (result.size - 1) / result.size;
    EXPECT_DOUBLE_EQ(result.bus_bandwidth_gbs, result.bandwidth_bytes * factor / result.bandwidth_s / 1e9);
  }
}

TEST(PreflightTest, WrongResultThrowsOnEveryRankNamingGroupRankAndElement) {
  CorruptingCommunicator corrupt(/*victim=*/1);
  try {
    preflight_check({&corrupt}, {}, small_options());
    ADD_FAILURE() << "a corrupted all_reduce passed the pre-flight check";
  } catch (const Error& error) {
    std::string message = error.what();
    if (corrupt.rank() == 1) {
      EXPECT_NE(message.find("all_reduce on group 'corrupt' (rank 1 of " + std::to_string(corrupt.size()) + ")"),
                std::string::npos)
          << message;
      EXPECT_NE(message.find("at element 3 of 8"), std::string::npos) << message;
    } else {
      // Either told by the exchange, or seen directly: the timed max iterations spread rank 1's
      // corrupted element.
      bool told = message.find("rank 1 of group 'corrupt' got a wrong all_reduce result") != std::string::npos;
      bool seen = message.find("on group 'corrupt'") != std::string::npos &&
                  message.find("at element 3 of") != std::string::npos;
      EXPECT_TRUE(told || seen) << message;
    }
  }
}

TEST(PreflightTest, MonitoredWorldRecordsEachCheckAllReduce) {
  int rank = 0, size = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  auto recorder = std::make_shared<FlightRecorder>(rank, size);
  MonitoredCommunicator world(std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, "world"), recorder);
  PreflightOptions options = small_options();
  preflight_check({&world}, {}, options);
  FlightDump dump = recorder->snapshot("test");
  // Per size: one checked sum, the timed max iterations; then one summary exchange.
  size_t expected = 1 + options.latency_iterations + 1 + options.bandwidth_iterations + 1;
  ASSERT_EQ(dump.records.size(), expected);
  EXPECT_EQ(dump.records.front().shapes, (std::vector<Shape>{{8}}));
  EXPECT_EQ(dump.records[1 + options.latency_iterations].shapes, (std::vector<Shape>{{(64 << 10) / 4}}));
  EXPECT_EQ(dump.records.back().dtype, "f64");
  for (const OpRecord& record : dump.records) {
    EXPECT_EQ(record.op, "all_reduce");
    EXPECT_EQ(record.state, OpState::Completed);
  }
}

}  // namespace
}  // namespace tessera
