// NcclCommunicator on one GPU. First the shared Communicator suite
// (tests/support/communicator_suite.h) on a one-rank world on cuda:0, against the same closed
// forms as the MPI backend; then what only this backend has: ordering against the compute
// stream without host syncs, handles that keep their tensors alive, a large bf16 all-reduce,
// split() with other colors, the MPI-style bootstrap constructor (through a one-rank CPU
// communicator), abort() from another thread, and its error messages.
// One rank cannot show that NCCL sums across ranks in the right dtype: bench/collectives checks
// its results when run under mpirun on several GPUs.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/ops/ops.h"
#include "parallel/nccl_communicator.h"
#include "support/gpu.h"
#include "tests/support/communicator_suite.h"

namespace tessera {
namespace {

namespace suite = testing::communicator_suite;
using suite::error_message;

const Device kGpu = Device::cuda(0);

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

class NcclCommunicatorGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    TS_REQUIRE_GPU();
    world_ = std::make_unique<NcclCommunicator>(0);
  }
  std::unique_ptr<NcclCommunicator> world_;
};

// ---- the shared suite ----

TEST_F(NcclCommunicatorGpuTest, AllReduceSumAvgMaxEveryDtype) {
  suite::all_reduce_sum_avg_max_every_dtype(*world_, kGpu);
}

TEST_F(NcclCommunicatorGpuTest, AllGatherConcatenatesInRankOrder) {
  suite::all_gather_concatenates_in_rank_order(*world_, kGpu);
}

TEST_F(NcclCommunicatorGpuTest, ReduceScatterGivesEachRankItsReducedBlock) {
  suite::reduce_scatter_gives_each_rank_its_reduced_block(*world_, kGpu);
}

TEST_F(NcclCommunicatorGpuTest, BroadcastCopiesTheRootsTensor) {
  suite::broadcast_copies_the_roots_tensor(*world_, kGpu);
}

TEST_F(NcclCommunicatorGpuTest, SendRecvAroundARing) { suite::send_recv_around_a_ring(*world_, kGpu); }

// One rank: both neighbours are this rank, and NCCL's group takes the sends to oneself.
TEST_F(NcclCommunicatorGpuTest, BatchSendRecvExchangesWithBothNeighbours) {
  suite::batch_send_recv_exchanges_with_both_neighbours(*world_, kGpu);
}

TEST_F(NcclCommunicatorGpuTest, BatchSendRecvKeepsPostingOrder) {
  suite::batch_send_recv_keeps_posting_order(*world_, kGpu);
}

TEST_F(NcclCommunicatorGpuTest, AllToAllTransposesBlocks) { suite::all_to_all_transposes_blocks(*world_, kGpu); }

TEST_F(NcclCommunicatorGpuTest, AsyncHandlesCompleteWithTheSameResults) {
  suite::async_handles_complete_with_the_same_results(*world_, kGpu);
}

TEST_F(NcclCommunicatorGpuTest, DroppedHandleStillFinishesTheOutput) {
  suite::dropped_handle_still_finishes_the_output(*world_, kGpu);
}

TEST_F(NcclCommunicatorGpuTest, SplitGroupReducesOnlyOverItsMembers) {
  suite::split_group_reduces_only_over_its_members(*world_, kGpu);
}

TEST_F(NcclCommunicatorGpuTest, BadArgumentsNameTheOpGroupAndRank) {
  suite::bad_arguments_name_the_op_group_and_rank(*world_, kGpu);
}

// ---- NCCL only ----

TEST_F(NcclCommunicatorGpuTest, SingleProcessWorldIsRankZeroOfOneOnItsGpu) {
  EXPECT_EQ(world_->rank(), 0);
  EXPECT_EQ(world_->size(), 1);
  EXPECT_EQ(world_->name(), "world");
  EXPECT_EQ(world_->device(), kGpu);
  EXPECT_FALSE(world_->aborted());
  EXPECT_EQ(NcclCommunicator::nccl_version().rfind("2.", 0), 0u) << NcclCommunicator::nccl_version();
}

// A chain of GEMMs keeps the compute stream busy for many milliseconds and ends by writing
// `in`; all_gather copies `in` to `out` on the communication stream, and a kernel on the
// compute stream reads `out` right after. No host sync in between: without the events, the copy
// would read the NaN poison still in `in`, or the last kernel the poison still in `out`.
TEST_F(NcclCommunicatorGpuTest, OperationsAreOrderedWithTheComputeStreamWithoutHostSync) {
  const int64_t m = 2048, n = m * m;
  Generator generator(5);
  Tensor x = randn({m, m}, generator, DType::F32, kGpu);
  Tensor mean = Tensor::full({m, m}, 1.0 / static_cast<double>(m), DType::F32, kGpu);  // x @ mean: row means
  for (int i = 0; i < 24; ++i) x = matmul(x, mean) + 1.0;
  Tensor in = testing::poisoned({n}, DType::F32, kGpu);
  Tensor out = testing::poisoned({n}, DType::F32, kGpu);
  in.copy_(x.reshape({n}));
  world_->all_gather(in, out);
  Tensor shifted = out + 1.0;
  std::vector<float> got = shifted.to_vector<float>();
  std::vector<float> want = (x.reshape({n}) + 1.0).to_vector<float>();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << "element " << i;
}

// The handle is the only owner of the input: were it released early, the caching allocator
// would hand its block to `overwrite`, filled on the compute stream while NCCL still reads it.
TEST_F(NcclCommunicatorGpuTest, AsyncHandleKeepsItsTensorsAlive) {
  const int64_t n = int64_t{1} << 24;
  Tensor out = testing::poisoned({n}, DType::F32, kGpu);
  auto work = world_->all_gather_async(Tensor::full({n}, 3.0, DType::F32, kGpu), out);
  Tensor overwrite = Tensor::full({n}, -1.0, DType::F32, kGpu);
  work->wait();
  std::vector<float> got = out.to_vector<float>();
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], 3.0f) << "element " << i;
  EXPECT_EQ(overwrite.to_vector<float>()[0], -1.0f);
}

// Large enough for NCCL's multi-channel, chunked paths; on one rank every reduction of random
// bf16 values must return them bit for bit.
TEST_F(NcclCommunicatorGpuTest, LargeBf16AllReduceKeepsEveryValueOnOneRank) {
  const int64_t n = (int64_t{1} << 22) + 3;
  Generator generator(9);
  Tensor values = randn({n}, generator, DType::BF16, kGpu);
  std::vector<float> want = values.to_vector<float>();
  for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max}) {
    Tensor tensor = values.clone();
    world_->all_reduce(tensor, op);
    std::vector<float> got = tensor.to_vector<float>();
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << reduce_op_name(op) << " element " << i;
  }
}

TEST_F(NcclCommunicatorGpuTest, SplitChildrenAreIndependentCommunicators) {
  auto tp = world_->split(3, 9, "tp");
  EXPECT_EQ(tp->name(), "tp");
  EXPECT_EQ(tp->rank(), 0);
  EXPECT_EQ(tp->size(), 1);
  auto grandchild = tp->split(0, 0, "tp-0");
  Tensor tensor = Tensor::full({5}, 2.5, DType::F32, kGpu);
  grandchild->all_reduce(tensor, ReduceOp::Avg);
  tp->all_reduce(tensor, ReduceOp::Sum);
  grandchild.reset();
  tp.reset();
  world_->all_reduce(tensor, ReduceOp::Max);  // the parent outlives its children
  EXPECT_EQ(tensor.to_vector<float>(), std::vector<float>(5, 2.5f));
  std::string aborted_child = error_message([&] {
    auto child = world_->split(0, 0, "dp");
    static_cast<NcclCommunicator&>(*child).abort();
    child->barrier();
  });
  EXPECT_TRUE(contains(aborted_child, "barrier on group 'dp' (rank 0 of 1): the communicator was aborted"))
      << aborted_child;
  world_->barrier();  // aborting a child leaves the parent working
}

// A stand-in for the world MpiCommunicator: one rank on the CPU, whose broadcast from rank 0
// and all-reduce leave the tensor as it is. Only what the bootstrap uses is implemented.
class OneRankCpuCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& name() const override { return name_; }
  Device device() const override { return Device::cpu(); }
  void broadcast(Tensor& tensor, int root) override {
    ++broadcasts;
    EXPECT_EQ(root, 0);
    EXPECT_EQ(tensor.device(), Device::cpu());
  }
  void all_reduce(Tensor& tensor, ReduceOp) override {
    ++all_reduces;
    EXPECT_EQ(tensor.device(), Device::cpu());
  }
  std::unique_ptr<Communicator> split(int, int, std::string) const override { unused("split"); }
  void all_gather(const Tensor&, Tensor&) override { unused("all_gather"); }
  void reduce_scatter(const Tensor&, Tensor&, ReduceOp) override { unused("reduce_scatter"); }
  void send(const Tensor&, int, int) override { unused("send"); }
  void recv(Tensor&, int, int) override { unused("recv"); }
  void all_to_all(const Tensor&, Tensor&) override { unused("all_to_all"); }
  void barrier() override { unused("barrier"); }
  std::unique_ptr<WorkHandle> all_reduce_async(Tensor&, ReduceOp) override { unused("all_reduce_async"); }
  std::unique_ptr<WorkHandle> all_gather_async(const Tensor&, Tensor&) override { unused("all_gather_async"); }
  std::unique_ptr<WorkHandle> reduce_scatter_async(const Tensor&, Tensor&, ReduceOp) override {
    unused("reduce_scatter_async");
  }
  std::unique_ptr<WorkHandle> batch_send_recv(std::vector<P2pOp>) override { unused("batch_send_recv"); }

  int broadcasts = 0;
  int all_reduces = 0;

 private:
  [[noreturn]] static void unused(const char* op) { throw Error(std::string("bootstrap must not call ") + op); }
  std::string name_ = "bootstrap";
};

TEST_F(NcclCommunicatorGpuTest, BootstrapConstructorTakesTheRanksAndNameOfACpuCommunicator) {
  OneRankCpuCommunicator bootstrap;
  NcclCommunicator comm(bootstrap, 0);
  EXPECT_EQ(bootstrap.all_reduces, 1);  // every rank can use its GPU
  EXPECT_EQ(bootstrap.broadcasts, 1);   // the unique id
  EXPECT_EQ(comm.name(), "bootstrap");
  EXPECT_EQ(comm.rank(), 0);
  EXPECT_EQ(comm.size(), 1);
  Tensor tensor = Tensor::full({3}, 4.0, DType::F64, kGpu);
  comm.all_reduce(tensor, ReduceOp::Sum);
  EXPECT_EQ(tensor.to_vector<double>(), std::vector<double>(3, 4.0));

  std::string gpu_bootstrap = error_message([&] { NcclCommunicator nested(*world_, 0); });
  EXPECT_TRUE(contains(gpu_bootstrap, "must work on the CPU")) << gpu_bootstrap;
}

// A watchdog thread aborts the communicator while an operation is outstanding: waiting on it,
// and every later operation, throws instead of returning invalid results.
TEST_F(NcclCommunicatorGpuTest, AbortFromAnotherThreadFailsLaterOperationsClearly) {
  NcclCommunicator comm(0, "doomed");
  Tensor tensor = Tensor::ones({1 << 20}, DType::F32, kGpu);
  auto work = comm.all_reduce_async(tensor, ReduceOp::Sum);
  std::thread watchdog([&] { comm.abort(); });
  watchdog.join();
  EXPECT_TRUE(comm.aborted());
  std::string waited = error_message([&] { work->wait(); });
  EXPECT_TRUE(contains(waited, "all_reduce on group 'doomed' (rank 0 of 1): the communicator was aborted")) << waited;
  std::string later = error_message([&] { comm.all_gather(tensor, tensor); });
  EXPECT_TRUE(contains(later, "all_gather on group 'doomed' (rank 0 of 1): the communicator was aborted")) << later;
  std::string split = error_message([&] { comm.split(0, 0, "child"); });
  EXPECT_TRUE(contains(split, "split on group 'doomed'")) << split;
  comm.abort();  // idempotent
  work.reset();
}

TEST_F(NcclCommunicatorGpuTest, ErrorsNameTheProblemAndTheFix) {
  Tensor host = Tensor::zeros({4});
  std::string wrong_device = error_message([&] { world_->all_reduce(host, ReduceOp::Sum); });
  EXPECT_TRUE(contains(wrong_device,
                       "all_reduce on group 'world' (rank 0 of 1): input/output tensor is on cpu but "
                       "this communicator works on cuda:0"))
      << wrong_device;

  Tensor tensor = Tensor::zeros({4}, DType::F32, kGpu);
  std::string self = error_message([&] { world_->send(tensor, 0, 0); });
  EXPECT_TRUE(contains(self, "sending to oneself is not supported")) << self;

  int missing = cuda_device_count();
  std::string device = error_message([&] { NcclCommunicator comm(missing, "tp"); });
  EXPECT_TRUE(contains(device, "GPU cuda:" + std::to_string(missing) + " is not visible")) << device;
}

}  // namespace
}  // namespace tessera
