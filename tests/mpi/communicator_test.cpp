// MpiCommunicator against closed-form results, run as 2 and 4 real ranks: the shared
// Communicator suite (tests/support/communicator_suite.h) on the CPU; in CUDA builds also the
// NCCL bootstrap over MPI when a rank cannot use its GPU.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <string>

#include "core/cuda/runtime.h"
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
