// Pipeline schedules as action lists: hand-derived Megatron action sequences, Megatron-core's
// schedule-table example, every forward/backward exactly once and forward first over a grid,
// live activations (1F1B <= pp, GPipe = m, interleaved = warmup + 1) and option errors.
#include "parallel/pipeline_schedule.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "core/check.h"
#include "parallel/pipeline_timeline.h"

namespace tessera {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using Type = P2PTransfer::Type;
using Kind = PipelineScheduleKind;

std::vector<std::string> names(const std::vector<PipelineAction>& actions, bool compute_only = false) {
  std::vector<std::string> out;
  for (const auto& a : actions) {
    if (!compute_only || a.is_compute()) out.push_back(a.name());
  }
  return out;
}

std::string error_of(const PipelineScheduleOptions& o) {
  try {
    build_pipeline_schedule(o);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// Every option set the grid tests run: all three schedules, pp 1..6, m 1..12, vpp 2..3.
std::vector<PipelineScheduleOptions> schedule_grid() {
  std::vector<PipelineScheduleOptions> grid;
  for (int pp = 1; pp <= 6; ++pp) {
    for (int m = 1; m <= 12; ++m) {
      grid.push_back({Kind::GPipe, pp, 1, m});
      grid.push_back({Kind::OneFOneB, pp, 1, m});
      for (int vpp = 2; vpp <= 3 && pp >= 2; ++vpp) {
        if (m % pp == 0) grid.push_back({Kind::Interleaved1F1B, pp, vpp, m});
      }
    }
  }
  return grid;
}

std::string describe_options(const PipelineScheduleOptions& o) {
  return detail::concat(schedule_kind_name(o.kind), " pp ", o.pp, " vpp ", o.vpp, " m ", o.num_microbatches);
}

TEST(PipelineScheduleTest, NumMicrobatchesIsGlobalOverMicroTimesDp) {
  EXPECT_EQ(num_microbatches(64, 2, 4), 8);
  EXPECT_EQ(num_microbatches(8, 8, 1), 1);
  try {
    num_microbatches(10, 4, 1);
    FAIL() << "10 / (4 x 1) accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(),
                HasSubstr("global_batch_size 10 is not divisible by micro_batch_size 4 x data-parallel size 1"));
  }
  EXPECT_THROW(num_microbatches(8, 0, 1), Error);
}

TEST(PipelineScheduleTest, OneFOneBOnTwoStagesIsMegatronsSequence) {
  // Worked by hand from forward_backward_pipelining_without_interleaving, pp 2, m 3.
  PipelineSchedule s = build_pipeline_schedule({Kind::OneFOneB, 2, 1, 3});
  EXPECT_THAT(names(s.stages[0]), ElementsAre("F0.0", "send_forward", "F1.0", "send_forward_recv_backward", "B0.0",
                                              "F2.0", "send_forward_recv_backward", "B1.0", "recv_backward", "B2.0"));
  EXPECT_THAT(names(s.stages[1]), ElementsAre("recv_forward", "F0.0", "B0.0", "send_backward_recv_forward", "F1.0",
                                              "B1.0", "send_backward_recv_forward", "F2.0", "B2.0", "send_backward"));
  // The batched transfers name their peer and tensor.
  EXPECT_THAT(s.stages[0][3].transfers,
              ElementsAre(P2PTransfer{Type::SendForward, 1, 1, 0}, P2PTransfer{Type::RecvBackward, 1, 0, 0}));
  EXPECT_THAT(s.stages[1][3].transfers,
              ElementsAre(P2PTransfer{Type::SendBackward, 0, 0, 0}, P2PTransfer{Type::RecvForward, 0, 1, 0}));
  EXPECT_EQ(describe(s.stages[1][3].transfers[1]), "recv_forward F1.0 <- 0");
}

TEST(PipelineScheduleTest, OneFOneBPhasesAreSeparateFunctions) {
  // Stage 1 of 4 with 6 micro-batches: 2 warmup forwards, 4 steady F/B pairs, 2 cooldown backwards.
  std::vector<PipelineAction> warmup, steady, cooldown;
  append_1f1b_warmup(warmup, 4, 1, 6);
  append_1f1b_steady(steady, 4, 1, 6);
  append_1f1b_cooldown(cooldown, 4, 1, 6);
  EXPECT_EQ(num_1f1b_warmup_microbatches(4, 1, 6), 2);
  EXPECT_THAT(names(warmup, true), ElementsAre("F0.0", "F1.0"));
  EXPECT_THAT(names(steady, true), ElementsAre("F2.0", "B0.0", "F3.0", "B1.0", "F4.0", "B2.0", "F5.0", "B3.0"));
  EXPECT_THAT(names(cooldown, true), ElementsAre("B4.0", "B5.0"));
  EXPECT_THAT(names(steady), AllOf(Contains("send_forward_recv_backward"), Contains("send_backward_recv_forward")));
  std::vector<PipelineAction> all = warmup;
  all.insert(all.end(), steady.begin(), steady.end());
  all.insert(all.end(), cooldown.begin(), cooldown.end());
  EXPECT_EQ(all, build_pipeline_schedule({Kind::OneFOneB, 4, 1, 6}).stages[1]);
}

TEST(PipelineScheduleTest, ScheduleTableMatchesMegatronsExample) {
  // The table in Megatron-core's forward_backward_pipelining_with_interleaving comment:
  // PP2 N3M5 with VP2: microbatch 0 1 2 0 1 2 3 4 3 4, chunk 0 0 0 1 1 1 0 0 1 1.
  auto table = interleaved_schedule_table(5, 2, 3);
  std::vector<int> mbs, chunks;
  for (auto [mb, chunk] : table) {
    mbs.push_back(mb);
    chunks.push_back(chunk);
  }
  EXPECT_THAT(mbs, ElementsAre(0, 1, 2, 0, 1, 2, 3, 4, 3, 4));
  EXPECT_THAT(chunks, ElementsAre(0, 0, 0, 1, 1, 1, 0, 0, 1, 1));
}

TEST(PipelineScheduleTest, InterleavedComputeOrderIsMegatrons) {
  // pp 2, vpp 2, m 4, worked by hand: table (0,0) (1,0) (0,1) (1,1) (2,0) (3,0) (2,1) (3,1);
  // warmup (pp-s-1)*2 + (vpp-1)*pp = 4 on stage 0, 2 on stage 1; backward k runs the table's
  // micro-batch on chunk vpp-1-chunk.
  PipelineSchedule s = build_pipeline_schedule({Kind::Interleaved1F1B, 2, 2, 4});
  EXPECT_EQ(num_interleaved_warmup_microbatches(2, 2, 0, 4), 4);
  EXPECT_EQ(num_interleaved_warmup_microbatches(2, 2, 1, 4), 2);
  EXPECT_THAT(names(s.stages[0], true), ElementsAre("F0.0", "F1.0", "F0.1", "F1.1", "F2.0", "B0.1", "F3.0", "B1.1",
                                                    "F2.1", "B0.0", "F3.1", "B1.0", "B2.1", "B3.1", "B2.0", "B3.0"));
  EXPECT_THAT(names(s.stages[1], true), ElementsAre("F0.0", "F1.0", "F0.1", "B0.1", "F1.1", "B1.1", "F2.0", "B0.0",
                                                    "F3.0", "B1.0", "F2.1", "B2.1", "F3.1", "B3.1", "B2.0", "B3.0"));
  // Stage 1 chunk 0 feeds stage 0 chunk 1 around the ring.
  EXPECT_THAT(s.stages[1][2].transfers, Contains(P2PTransfer{Type::SendForward, 0, 0, 0}));
}

TEST(PipelineScheduleTest, InterleavedSteadyStateBatchesBothDirections) {
  PipelineSchedule s = build_pipeline_schedule({Kind::Interleaved1F1B, 4, 2, 8});
  EXPECT_THAT(names(s.stages[1]), Contains("send_forward_backward_recv_forward_backward"));
  EXPECT_THAT(names(s.stages[1]), Contains("send_forward_recv_forward"));
  EXPECT_THAT(names(s.stages[1]), Contains("send_backward_recv_backward"));
}

TEST(PipelineScheduleTest, EveryForwardAndBackwardExactlyOnceForwardFirst) {
  int schedules = 0;
  for (const auto& o : schedule_grid()) {
    PipelineSchedule s = build_pipeline_schedule(o);
    ASSERT_EQ(int(s.stages.size()), o.pp);
    for (int stage = 0; stage < o.pp; ++stage) {
      std::map<std::pair<int, int>, int> forward_at, backward_at, forwards, backwards;
      const auto& actions = s.stages[stage];
      for (int i = 0; i < int(actions.size()); ++i) {
        const auto& a = actions[i];
        if (a.kind == PipelineAction::Kind::Communicate) {
          EXPECT_FALSE(a.transfers.empty()) << describe_options(o);
          continue;
        }
        auto key = std::make_pair(a.micro_batch, a.chunk);
        if (a.kind == PipelineAction::Kind::Forward) {
          ++forwards[key];
          forward_at[key] = i;
        } else {
          ++backwards[key];
          backward_at[key] = i;
        }
      }
      for (int c = 0; c < o.vpp; ++c) {
        for (int mb = 0; mb < o.num_microbatches; ++mb) {
          auto key = std::make_pair(mb, c);
          std::string what = describe_options(o) + detail::concat(" stage ", stage, " F/B", mb, ".", c);
          EXPECT_EQ(forwards[key], 1) << what;
          EXPECT_EQ(backwards[key], 1) << what;
          EXPECT_LT(forward_at[key], backward_at[key]) << what;
        }
      }
      EXPECT_EQ(int(forwards.size() + backwards.size()), 2 * o.num_microbatches * o.vpp) << describe_options(o);
    }
    ++schedules;
  }
  EXPECT_GT(schedules, 150);
}

TEST(PipelineScheduleTest, LiveActivations) {
  for (const auto& o : schedule_grid()) {
    PipelineSchedule s = build_pipeline_schedule(o);
    const int m = o.num_microbatches;
    for (int stage = 0; stage < o.pp; ++stage) {
      int peak = peak_live_activations(s.stages[stage]);
      std::string what = describe_options(o) + detail::concat(" stage ", stage);
      switch (o.kind) {
        case Kind::GPipe:  // every micro-batch waits for the backward phase
          EXPECT_EQ(peak, m) << what;
          break;
        case Kind::OneFOneB:  // pp - s in flight, never more than pp
          EXPECT_EQ(peak, std::min(m, o.pp - stage)) << what;
          EXPECT_LE(peak, o.pp) << what;
          break;
        case Kind::Interleaved1F1B:  // the warmup's forwards plus the first steady one, in chunks
          EXPECT_EQ(peak, std::min(num_interleaved_warmup_microbatches(o.pp, o.vpp, stage, m) + 1, m * o.vpp)) << what;
          break;
      }
    }
  }
}

TEST(PipelineScheduleTest, AnalyticBubbleFractions) {
  EXPECT_DOUBLE_EQ(analytic_bubble_fraction({Kind::OneFOneB, 4, 1, 8}), 3.0 / 11.0);
  EXPECT_DOUBLE_EQ(analytic_bubble_fraction({Kind::GPipe, 4, 1, 8}), 3.0 / 11.0);
  EXPECT_DOUBLE_EQ(analytic_bubble_fraction({Kind::Interleaved1F1B, 4, 2, 8}), 3.0 / 19.0);
  EXPECT_DOUBLE_EQ(analytic_bubble_fraction({Kind::OneFOneB, 1, 1, 8}), 0.0);
}

TEST(PipelineScheduleTest, BadOptionsAreRefusedWithTheRule) {
  EXPECT_THAT(error_of({Kind::Interleaved1F1B, 4, 2, 6}),
              AllOf(HasSubstr("interleaved_1f1b needs the number of micro-batches"),
                    HasSubstr("= 6) to be a multiple of pipeline_model_parallel_size 4")));
  EXPECT_THAT(error_of({Kind::Interleaved1F1B, 4, 2, 2}),
              HasSubstr("interleaved_1f1b needs at least pipeline_model_parallel_size 4 micro-batches"));
  EXPECT_THAT(error_of({Kind::Interleaved1F1B, 4, 1, 8}),
              HasSubstr("interleaved_1f1b needs virtual_pipeline_model_parallel_size >= 2"));
  EXPECT_THAT(error_of({Kind::Interleaved1F1B, 1, 2, 8}),
              HasSubstr("interleaved_1f1b needs pipeline_model_parallel_size >= 2"));
  EXPECT_THAT(error_of({Kind::OneFOneB, 4, 2, 8}),
              HasSubstr("virtual_pipeline_model_parallel_size 2 needs the interleaved_1f1b schedule"));
  EXPECT_THAT(error_of({Kind::GPipe, 4, 1, 0}), HasSubstr("micro-batches must be >= 1"));
  EXPECT_EQ(schedule_kind_from_name("interleaved_1f1b"), Kind::Interleaved1F1B);
  try {
    schedule_kind_from_name("zero_bubble");
    FAIL() << "unknown schedule accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("unknown pipeline schedule 'zero_bubble'; choose gpipe, 1f1b or interleaved_1f1b"));
  }
}

}  // namespace
}  // namespace tessera
