// ProcessGroups against Megatron's rank order, rebuilt here independently: ranks are handed
// out by nested loops over (pp, dp, cp, tp) with tp innermost (Megatron-core's default order
// "tp-cp-ep-dp-pp", ep = 1), and a rank's group along one axis is every rank that agrees with
// it on the other three. Each group's membership is read back through the group itself
// (all_gather of world ranks) and checked in order; a group all_reduce must sum over exactly
// those members. Bad layouts are rejected before any communication. Also launch_context.
#include "parallel/process_groups.h"

#include <gtest/gtest.h>
#include <mpi.h>

#include <array>
#include <string>
#include <vector>

#include "parallel/mpi_communicator.h"
#include "tests/mpi/mpi_test_main.h"

namespace tessera {
namespace {

enum Axis { kTp, kCp, kDp, kPp };
using Coordinates = std::array<int, 4>;  // indexed by Axis

// coordinates[world rank], assigned in Megatron's order.
std::vector<Coordinates> megatron_rank_table(const ParallelLayout& layout) {
  std::vector<Coordinates> table;
  for (int pp = 0; pp < layout.pp; ++pp)
    for (int dp = 0; dp < layout.dp; ++dp)
      for (int cp = 0; cp < layout.cp; ++cp)
        for (int tp = 0; tp < layout.tp; ++tp) table.push_back({tp, cp, dp, pp});
  return table;
}

// World ranks of `rank`'s group along `axis`, ordered by their coordinate on that axis.
std::vector<int> expected_group(const std::vector<Coordinates>& table, int rank, Axis axis) {
  std::vector<int> members;
  for (size_t other = 0; other < table.size(); ++other) {
    bool same_elsewhere = true;
    for (int a = 0; a < 4; ++a) {
      if (a != axis && table[other][a] != table[rank][a]) same_elsewhere = false;
    }
    if (same_elsewhere) members.push_back(static_cast<int>(other));
  }
  return members;
}

std::vector<int> members_of(Communicator& group, int world_rank) {
  Tensor mine = Tensor::from_vector(std::vector<int32_t>{world_rank}, {1});
  Tensor all = Tensor::zeros({group.size()}, DType::I32);
  group.all_gather(mine, all);
  return all.to_vector<int32_t>();
}

std::string layout_name(const ParallelLayout& l) {
  return "tp" + std::to_string(l.tp) + " cp" + std::to_string(l.cp) + " dp" + std::to_string(l.dp) + " pp" +
         std::to_string(l.pp);
}

TEST(ProcessGroupsTest, GroupsFollowMegatronRankOrder) {
  MpiCommunicator world(MPI_COMM_WORLD, "world");
  const std::vector<ParallelLayout> layouts = {{.tp = 2, .dp = 2}, {.tp = 4}, {.tp = 2, .pp = 2},
                                               {.dp = 2, .cp = 2}, {.dp = 4}, {.tp = 2},
                                               {.dp = 2},          {.pp = 2}, {.cp = 2}};
  int checked = 0;
  for (const ParallelLayout& layout : layouts) {
    if (layout.product() != world.size()) continue;
    ++checked;
    ProcessGroups groups(world, layout);
    std::vector<Coordinates> table = megatron_rank_table(layout);
    const Coordinates& mine = table[world.rank()];
    EXPECT_EQ(groups.coords(), (ParallelCoords{mine[kTp], mine[kCp], mine[kDp], mine[kPp]})) << layout_name(layout);
    std::array<Communicator*, 4> by_axis = {&groups.tp(), &groups.cp(), &groups.dp(), &groups.pp()};
    for (Axis axis : {kTp, kCp, kDp, kPp}) {
      Communicator& group = *by_axis[axis];
      std::vector<int> expected = expected_group(table, world.rank(), axis);
      EXPECT_EQ(members_of(group, world.rank()), expected) << layout_name(layout) << " group " << group.name();
      EXPECT_EQ(group.rank(), mine[axis]) << layout_name(layout) << " group " << group.name();
      // A group all_reduce sums over its members only.
      Tensor tensor = Tensor::full({5}, world.rank() + 1.0, DType::F64);
      group.all_reduce(tensor, ReduceOp::Sum);
      double expected_sum = 0;
      for (int member : expected) expected_sum += member + 1.0;
      EXPECT_EQ(tensor.to_vector<double>(), std::vector<double>(5, expected_sum))
          << layout_name(layout) << " group " << group.name();
    }
  }
  EXPECT_GE(checked, 3) << "world size " << world.size() << " matched too few layouts";
}

// Megatron's embedding group: for each (tp, cp, dp) coordinate, the ranks of pp rank 0 and
// pp rank pp-1 (the table's ranks agreeing on the other axes), in that order; middle stages and
// pp = 1 layouts have none.
TEST(ProcessGroupsTest, EmbeddingGroupHoldsTheFirstAndLastStage) {
  MpiCommunicator world(MPI_COMM_WORLD, "world");
  const std::vector<ParallelLayout> layouts = {{.pp = 2},          {.tp = 2, .pp = 2}, {.pp = 4},
                                               {.pp = 2, .dp = 2}, {.dp = 2},          {.tp = 2, .dp = 2}};
  int checked = 0;
  for (const ParallelLayout& layout : layouts) {
    if (layout.product() != world.size()) continue;
    ++checked;
    ProcessGroups groups(world, layout);
    std::vector<Coordinates> table = megatron_rank_table(layout);
    const Coordinates& mine = table[world.rank()];
    std::vector<int> expected;
    for (int pp : {0, layout.pp - 1}) {
      if (layout.pp == 1 || (mine[kPp] != 0 && mine[kPp] != layout.pp - 1)) break;
      for (size_t other = 0; other < table.size(); ++other) {
        if (table[other][kTp] == mine[kTp] && table[other][kCp] == mine[kCp] && table[other][kDp] == mine[kDp] &&
            table[other][kPp] == pp)
          expected.push_back(static_cast<int>(other));
      }
    }
    Communicator* group = groups.embedding();
    if (expected.empty()) {
      EXPECT_EQ(group, nullptr) << layout_name(layout) << " rank " << world.rank();
      continue;
    }
    ASSERT_NE(group, nullptr) << layout_name(layout) << " rank " << world.rank();
    EXPECT_EQ(members_of(*group, world.rank()), expected) << layout_name(layout);
    EXPECT_EQ(group->rank(), mine[kPp] == 0 ? 0 : 1) << layout_name(layout);
  }
  EXPECT_GE(checked, 1) << "world size " << world.size() << " matched no layout";
  world.barrier();
}

TEST(ProcessGroupsTest, BadLayoutsAreRejectedBeforeCommunication) {
  MpiCommunicator world(MPI_COMM_WORLD, "world");
  auto message_of = [](auto&& call) -> std::string {
    try {
      call();
    } catch (const Error& error) {
      return error.what();
    }
    return "no error";
  };
  // Every rank throws in the constructor, before its first split.
  std::string too_many = message_of([&] { ProcessGroups(world, {.tp = world.size() * 2}); });
  EXPECT_NE(too_many.find("world size " + std::to_string(world.size()) + " != tp " + std::to_string(world.size() * 2) +
                          " x pp 1 x dp 1 x cp 1"),
            std::string::npos)
      << too_many;
  std::string zero = message_of([&] { validate_layout({.tp = 0}, world.size()); });
  EXPECT_NE(zero.find("every size must be >= 1"), std::string::npos) << zero;

  std::string heads = message_of([&] { validate_layout_for_model({.tp = 4}, 6, 2); });
  EXPECT_NE(heads.find("tp 4 does not divide the model's 6 attention heads"), std::string::npos) << heads;
  std::string kv_heads = message_of([&] { validate_layout_for_model({.tp = 4}, 8, 2); });
  EXPECT_NE(kv_heads.find("tp 4 does not divide the model's 2 kv heads"), std::string::npos) << kv_heads;
  EXPECT_EQ(message_of([&] { validate_layout_for_model({.tp = 2}, 8, 2); }), "no error");
  world.barrier();
}

TEST(ProcessGroupsTest, VocabularyPadsToAMultipleOf128TimesTp) {
  EXPECT_EQ(padded_vocab_size(50257, 1), 50304);  // GPT-2's padded vocabulary in Megatron
  EXPECT_EQ(padded_vocab_size(50257, 2), 50432);
  EXPECT_EQ(padded_vocab_size(256, 2), 256);
  EXPECT_EQ(padded_vocab_size(1, 4), 512);
}

TEST(LaunchContextTest, MatchesTheWorldOnOneNode) {
  LaunchContext context = launch_context(testing::mpi_runtime());
  int rank = -1, size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(context.rank, rank);
  EXPECT_EQ(context.world_size, size);
  // mpirun in CI starts every rank on this machine.
  EXPECT_EQ(context.local_rank, rank);
  EXPECT_EQ(context.local_size, size);
}

}  // namespace
}  // namespace tessera
