// MpiCommunicator against closed-form results, run as 2 and 4 real ranks: the shared
// Communicator suite (tests/support/communicator_suite.h) on the CPU; in CUDA builds also the
// NCCL bootstrap over MPI when a rank cannot use its GPU.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <string>

#include "core/cuda/runtime.h"
#include "parallel/monitored_communicator.h"
#include "parallel/mpi_communicator.h"
#include "tests/support/communicator_suite.h"
#ifdef TESSERA_WITH_NCCL
#include "parallel/nccl_communicator.h"
#endif

namespace tessera {
namespace {

namespace suite = testing::communicator_suite;

class MpiCommunicatorTest : public ::testing::Test {
 protected:
  MpiCommunicator world_{MPI_COMM_WORLD, "world"};
  const Device cpu_ = Device::cpu();
};

TEST_F(MpiCommunicatorTest, AllReduceSumAvgMaxEveryDtype) { suite::all_reduce_sum_avg_max_every_dtype(world_, cpu_); }

TEST_F(MpiCommunicatorTest, AllGatherConcatenatesInRankOrder) {
  suite::all_gather_concatenates_in_rank_order(world_, cpu_);
}

TEST_F(MpiCommunicatorTest, ReduceScatterGivesEachRankItsReducedBlock) {
  suite::reduce_scatter_gives_each_rank_its_reduced_block(world_, cpu_);
}

TEST_F(MpiCommunicatorTest, BroadcastCopiesTheRootsTensor) { suite::broadcast_copies_the_roots_tensor(world_, cpu_); }

TEST_F(MpiCommunicatorTest, SendRecvAroundARing) { suite::send_recv_around_a_ring(world_, cpu_); }

TEST_F(MpiCommunicatorTest, BatchSendRecvExchangesWithBothNeighbours) {
  suite::batch_send_recv_exchanges_with_both_neighbours(world_, cpu_);
}

TEST_F(MpiCommunicatorTest, BatchSendRecvKeepsPostingOrder) {
  suite::batch_send_recv_keeps_posting_order(world_, cpu_);
}

// MPI tags keep two streams between the same ranks apart even when posted interleaved
// differently on the two sides; a receive for more bytes than were sent fails at wait().
TEST_F(MpiCommunicatorTest, BatchSendRecvMatchesPerTagAndChecksSizes) {
  const int size = world_.size(), rank = world_.rank();
  const int next = (rank + 1) % size, previous = (rank + size - 1) % size;
  Tensor a = Tensor::full({4}, rank + 0.5, DType::F32), b = Tensor::full({4}, rank + 0.25, DType::F32);
  Tensor got_a = Tensor::zeros({4}), got_b = Tensor::zeros({4});
  // Sends post a then b; receives post b then a.
  world_
      .batch_send_recv({P2pOp::send(a, next, 1), P2pOp::send(b, next, 2), P2pOp::recv(got_b, previous, 2),
                        P2pOp::recv(got_a, previous, 1)})
      ->wait();
  EXPECT_EQ(got_a.to_vector<float>(), std::vector<float>(4, previous + 0.5f));
  EXPECT_EQ(got_b.to_vector<float>(), std::vector<float>(4, previous + 0.25f));

  Tensor big = Tensor::zeros({5});
  auto work = world_.batch_send_recv({P2pOp::send(a, next, 3), P2pOp::recv(big, previous, 3)});
  std::string error = suite::error_message([&] { work->wait(); });
  EXPECT_NE(error.find("batch_send_recv on group 'world' (rank " + std::to_string(rank) + " of " +
                       std::to_string(size) + "): recv 1 expected 20 bytes from rank " + std::to_string(previous) +
                       " (tag 3), received 16; sender and receiver shapes differ"),
            std::string::npos)
      << error;
  world_.barrier();
}

// Through the flight recorder, a batch gives the suite's results and one send/recv entry per
// operation, numbered per peer in the same sequence as single sends and receives, all completed
// (the dropped handle's too).
TEST_F(MpiCommunicatorTest, MonitoredBatchRecordsEveryOperationPerPeer) {
  auto recorder = std::make_shared<FlightRecorder>(world_.rank(), world_.size());
  MonitoredCommunicator monitored(std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, "pp"), recorder);
  suite::batch_send_recv_keeps_posting_order(monitored, cpu_);  // 2 batches of 3 sends and 3 receives
  suite::send_recv_around_a_ring(monitored, cpu_);              // 3 single sends and receives
  const int size = world_.size(), rank = world_.rank();
  const int next = (rank + 1) % size, previous = (rank + size - 1) % size;
  std::vector<OpRecord> records = recorder->snapshot("test").records;
  ASSERT_EQ(records.size(), 18u);
  int64_t sends = 0, recvs = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    const OpRecord& record = records[i];
    SCOPED_TRACE(describe_op(record));
    EXPECT_TRUE(record.p2p);
    EXPECT_EQ(record.state, OpState::Completed);
    if (i < 12) {  // the batches: send, recv, send, recv, ... in posting order
      EXPECT_EQ(record.op, i % 2 == 0 ? "send" : "recv");
      EXPECT_EQ(record.tag, 0);
    }
    if (record.op == "send") {
      EXPECT_EQ(record.peer, next);
      EXPECT_EQ(record.seq, sends++);
    } else {
      EXPECT_EQ(record.peer, previous);
      EXPECT_EQ(record.seq, recvs++);
    }
  }
  EXPECT_EQ(sends, 9);
  EXPECT_EQ(recvs, 9);
}

TEST_F(MpiCommunicatorTest, AllToAllTransposesBlocks) { suite::all_to_all_transposes_blocks(world_, cpu_); }

TEST_F(MpiCommunicatorTest, AsyncHandlesCompleteWithTheSameResults) {
  suite::async_handles_complete_with_the_same_results(world_, cpu_);
}

TEST_F(MpiCommunicatorTest, DroppedHandleStillFinishesTheOutput) {
  suite::dropped_handle_still_finishes_the_output(world_, cpu_);
}

TEST_F(MpiCommunicatorTest, SplitGroupReducesOnlyOverItsMembers) {
  suite::split_group_reduces_only_over_its_members(world_, cpu_);
}

TEST_F(MpiCommunicatorTest, BadArgumentsNameTheOpGroupAndRank) {
  suite::bad_arguments_name_the_op_group_and_rank(world_, cpu_);
}

#ifdef TESSERA_WITH_NCCL
// The NCCL world is bootstrapped over this MPI world. Rank 0 asks for a GPU that does not
// exist: every rank must throw (rank 0 its own error, the others one naming rank 0, or their own
// where no GPU is visible at all) instead of waiting forever for rank 0's NCCL id.
TEST_F(MpiCommunicatorTest, NcclBootstrapFailsOnEveryRankWhenOneRankCannotUseItsGpu) {
  const int gpus = cuda_device_count();
  const int device = world_.rank() == 0 ? gpus : world_.rank() % std::max(gpus, 1);
  std::string error = suite::error_message([&] { NcclCommunicator nccl(world_, device); });
  if (world_.rank() == 0 || gpus == 0) {
    EXPECT_NE(error.find("is not visible (" + std::to_string(gpus) + " GPU(s) visible)"), std::string::npos) << error;
  } else {
    EXPECT_NE(error.find("rank 0 cannot use its GPU"), std::string::npos) << error;
  }
  world_.barrier();
}
#endif

}  // namespace
}  // namespace tessera
