// The simulator as a validator and a clock: every schedule of a (pp, m, vpp) grid runs without
// deadlock; with equal-cost stages and free communication the simulated bubble equals the
// analytic one exactly; closed-form makespans with a p2p cost; live activations as the issue
// states them; and broken schedules (deadlock, mismatched tensors, wrong peer, missing or
// early compute) are refused with a reason naming stage and action.
#include "parallel/pipeline_simulator.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/check.h"

namespace tessera {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using Kind = PipelineScheduleKind;
using Type = P2PTransfer::Type;

std::string describe_options(const PipelineScheduleOptions& o) {
  return detail::concat(schedule_kind_name(o.kind), " pp ", o.pp, " vpp ", o.vpp, " m ", o.num_microbatches);
}

std::string error_of(const PipelineSchedule& schedule) {
  try {
    simulate_pipeline(schedule, {});
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

PipelineAction comm(std::vector<P2PTransfer> transfers) { return PipelineAction::communicate(std::move(transfers)); }
PipelineAction fwd(int mb) { return PipelineAction::forward(mb, 0); }
PipelineAction bwd(int mb) { return PipelineAction::backward(mb, 0); }

// A correct hand-written pp 2, m 1 schedule the failure tests below break one piece at a time.
PipelineSchedule two_stage_one_microbatch() {
  PipelineSchedule s{{Kind::OneFOneB, 2, 1, 1}, {}};
  s.stages.push_back({fwd(0), comm({{Type::SendForward, 1, 0, 0}}), comm({{Type::RecvBackward, 1, 0, 0}}), bwd(0)});
  s.stages.push_back({comm({{Type::RecvForward, 0, 0, 0}}), fwd(0), bwd(0), comm({{Type::SendBackward, 0, 0, 0}})});
  return s;
}

TEST(PipelineSimulatorTest, EveryScheduleOfTheGridRunsWithEqualCostsAndExactBubble) {
  int runs = 0;
  for (int pp = 1; pp <= 6; ++pp) {
    for (int m = 1; m <= 12; ++m) {
      std::vector<PipelineScheduleOptions> options = {{Kind::GPipe, pp, 1, m}, {Kind::OneFOneB, pp, 1, m}};
      for (int vpp = 2; vpp <= 3 && pp >= 2; ++vpp) {
        if (m % pp == 0) options.push_back({Kind::Interleaved1F1B, pp, vpp, m});
      }
      for (const auto& o : options) {
        // Per-chunk costs: a stage's forward takes 1, its backward 2, whatever the chunking.
        const double f = 1.0 / o.vpp, b = 2.0 / o.vpp;
        SimulationResult r = simulate_pipeline(build_pipeline_schedule(o), {f, b, 0.0});
        const std::string what = describe_options(o);
        // Bubble per stage = 1 - busy / makespan; with equal stages every stage has the same.
        const double analytic = analytic_bubble_fraction(o);
        const double work = double(m) * o.vpp;
        EXPECT_NEAR(r.stats.makespan, (work + pp - 1) * (f + b), 1e-9) << what;
        ASSERT_EQ(int(r.stats.bubble_fraction.size()), pp) << what;
        for (int s = 0; s < pp; ++s) {
          EXPECT_NEAR(r.stats.compute_seconds[s], work * (f + b), 1e-9) << what << " stage " << s;
          EXPECT_NEAR(r.stats.bubble_fraction[s], analytic, 1e-12) << what << " stage " << s;
        }
        EXPECT_NEAR(r.stats.mean_bubble_fraction, analytic, 1e-12) << what;
        ++runs;
      }
    }
  }
  EXPECT_GT(runs, 150);
}

TEST(PipelineSimulatorTest, IssueExampleFourStagesEightMicrobatches) {
  // The issue's acceptance numbers: pp 4, m 8; equal-cost stages, free communication.
  SimulationResult one_f_one_b = simulate_pipeline(build_pipeline_schedule({Kind::OneFOneB, 4, 1, 8}), {1, 1, 0});
  EXPECT_NEAR(one_f_one_b.stats.mean_bubble_fraction, 3.0 / 11.0, 1e-12);
  SimulationResult interleaved =
      simulate_pipeline(build_pipeline_schedule({Kind::Interleaved1F1B, 4, 2, 8}), {0.5, 0.5, 0});
  EXPECT_NEAR(interleaved.stats.mean_bubble_fraction, 3.0 / 19.0, 1e-12);
  // Megatron's paper states the interleaved bubble relative to the ideal time: (p-1)/(v*m).
  const double ideal = 8 * (1.0 + 1.0);
  EXPECT_NEAR((interleaved.stats.makespan - ideal) / ideal, 3.0 / (2 * 8), 1e-12);
}

TEST(PipelineSimulatorTest, OneMicrobatchWalksThePipelineAndBack) {
  // m = 1: pp forwards, pp backwards and 2 (pp - 1) transfers in a row, whatever the schedule.
  for (int pp = 1; pp <= 5; ++pp) {
    for (Kind kind : {Kind::GPipe, Kind::OneFOneB}) {
      SimulationResult r = simulate_pipeline(build_pipeline_schedule({kind, pp, 1, 1}), {1.0, 2.0, 0.25});
      EXPECT_NEAR(r.stats.makespan, pp * 3.0 + 2 * (pp - 1) * 0.25, 1e-12) << schedule_kind_name(kind) << " pp " << pp;
    }
  }
}

TEST(PipelineSimulatorTest, LiveActivationsOneFOneBAtMostPpGPipeAll) {
  for (int pp : {2, 4}) {
    for (int m : {2, 4, 8, 16}) {
      SimulationResult one = simulate_pipeline(build_pipeline_schedule({Kind::OneFOneB, pp, 1, m}), {});
      SimulationResult all = simulate_pipeline(build_pipeline_schedule({Kind::GPipe, pp, 1, m}), {});
      for (int s = 0; s < pp; ++s) {
        EXPECT_EQ(one.stats.peak_live_activations[s], std::min(m, pp - s))
            << "pp " << pp << " m " << m << " stage " << s;
        EXPECT_LE(one.stats.peak_live_activations[s], pp);
        EXPECT_EQ(all.stats.peak_live_activations[s], m) << "pp " << pp << " m " << m << " stage " << s;
      }
    }
  }
}

TEST(PipelineSimulatorTest, TimelinesFollowTheActionLists) {
  PipelineSchedule schedule = build_pipeline_schedule({Kind::Interleaved1F1B, 2, 2, 4});
  SimulationResult r = simulate_pipeline(schedule, {0.5, 1.0, 0.1});
  for (int s = 0; s < 2; ++s) {
    const auto& events = r.timelines[s].events;
    ASSERT_EQ(events.size(), schedule.stages[s].size());
    double clock = 0;
    for (size_t i = 0; i < events.size(); ++i) {
      EXPECT_EQ(events[i].action, schedule.stages[s][i]);
      EXPECT_GE(events[i].begin, clock);  // in order, never overlapping
      double expected = events[i].action.kind == PipelineAction::Kind::Forward    ? 0.5
                        : events[i].action.kind == PipelineAction::Kind::Backward ? 1.0
                                                                                  : -1;
      if (expected >= 0) {
        EXPECT_NEAR(events[i].end - events[i].begin, expected, 1e-12);
      } else {
        EXPECT_GE(events[i].end - events[i].begin, 0.1 - 1e-12);  // a transfer takes the p2p cost
      }
      clock = events[i].end;
    }
  }
}

TEST(PipelineSimulatorTest, AHandWrittenScheduleRuns) {
  SimulationResult r = simulate_pipeline(two_stage_one_microbatch(), {1, 2, 0});
  EXPECT_NEAR(r.stats.makespan, 6.0, 1e-12);
}

TEST(PipelineSimulatorTest, DeadlockNamesTheStuckStagesAndTransfers) {
  // Stage 0 waits for a gradient before sending the activation stage 1 waits for.
  PipelineSchedule s = two_stage_one_microbatch();
  std::swap(s.stages[0][1], s.stages[0][2]);
  EXPECT_THAT(error_of(s), AllOf(HasSubstr("pipeline deadlock: stage 0 waits in recv_backward (recv_backward B0.0 <- 1 "
                                           "unmatched); stage 1 waits in recv_forward (recv_forward F0.0 <- 0 "
                                           "unmatched)")));
}

TEST(PipelineSimulatorTest, BlockingSendsInBothDirectionsDeadlockUnlessBatched) {
  // pp 2, m 2, 1F1B: the steady state exchanges an activation and a gradient between the two
  // stages at once. Megatron batches the pair; posted one at a time (send first) both block.
  PipelineSchedule batched = build_pipeline_schedule({Kind::OneFOneB, 2, 1, 2});
  EXPECT_EQ(error_of(batched), "no error");
  PipelineSchedule split = batched;
  for (auto& stage : split.stages) {
    std::vector<PipelineAction> actions;
    for (const auto& a : stage) {
      if (a.is_compute()) {
        actions.push_back(a);
        continue;
      }
      for (const auto& t : a.transfers) actions.push_back(comm({t}));
    }
    stage = actions;
  }
  EXPECT_THAT(error_of(split), AllOf(HasSubstr("pipeline deadlock: stage 0 waits in send_forward"),
                                     HasSubstr("stage 1 waits in send_backward")));
}

TEST(PipelineSimulatorTest, BrokenSchedulesAreRefusedWithTheReason) {
  PipelineSchedule s = two_stage_one_microbatch();
  s.stages[1][0].transfers[0].micro_batch = 1;
  s.options.num_microbatches = 2;
  EXPECT_THAT(error_of(s), HasSubstr("stage 1 recv_forward: recv_forward F1.0 <- 0 is matched with stage 0 "
                                     "send_forward: send_forward F0.0 -> 1, a different tensor"));

  s = two_stage_one_microbatch();
  std::swap(s.stages[1][0], s.stages[1][1]);
  EXPECT_THAT(error_of(s), HasSubstr("stage 1 F0.0 runs before its input activation was received"));

  s = two_stage_one_microbatch();
  std::swap(s.stages[0][2], s.stages[0][3]);
  EXPECT_THAT(error_of(s), HasSubstr("stage 0 B0.0 runs before its output gradient was received"));

  s = two_stage_one_microbatch();
  std::swap(s.stages[0][0], s.stages[0][1]);
  EXPECT_THAT(error_of(s), HasSubstr("stage 0 send_forward sends F0.0 before computing it"));

  s = two_stage_one_microbatch();
  s.stages[1].erase(s.stages[1].begin() + 2, s.stages[1].end());  // no backward, no gradient sent
  s.stages[0].erase(s.stages[0].begin() + 2, s.stages[0].end());
  EXPECT_THAT(error_of(s), HasSubstr("stage 0 never runs B0.0"));

  s = two_stage_one_microbatch();
  s.stages[1].insert(s.stages[1].begin() + 2, fwd(0));
  EXPECT_THAT(error_of(s), HasSubstr("stage 1 F0.0 runs twice"));

  PipelineSchedule three{{Kind::OneFOneB, 3, 1, 1}, {{fwd(0), comm({{Type::SendForward, 2, 0, 0}})}, {}, {}}};
  EXPECT_THAT(error_of(three), HasSubstr("send_forward F0.0 -> 2 but virtual stage 1 lives on stage 1"));

  s = two_stage_one_microbatch();
  s.stages[1][3].transfers[0] = {Type::SendForward, 0, 0, 0};
  EXPECT_THAT(error_of(s), HasSubstr("on virtual stage 1, which has no next virtual stage"));

  s = two_stage_one_microbatch();
  s.stages[0].insert(s.stages[0].begin(), comm({}));
  EXPECT_THAT(error_of(s), HasSubstr("stage 0 has a Communicate action without transfers"));

  s = two_stage_one_microbatch();
  s.stages.pop_back();
  EXPECT_THAT(error_of(s), HasSubstr("1 stage action lists for pipeline_model_parallel_size 2"));
}

}  // namespace
}  // namespace tessera
