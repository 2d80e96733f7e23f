// Runs every stage's action list of a PipelineSchedule in virtual time, as real ranks would, and
// so both validates a schedule and measures it.
//
// Execution model. Each stage runs its actions in order. Forward and Backward take a fixed
// cost. A Communicate action posts all of its transfers at once and finishes when every one of
// them has finished; a transfer starts when both its send and the matching receive have been
// posted (rendezvous: a send never completes into a buffer, the strictest semantics a backend
// may have, so a schedule that passes here cannot deadlock on a buffering one either) and takes
// the p2p cost. Sends and receives are matched in posting order per (sender, receiver,
// direction), the contract of pipeline_schedule.h.
//
// Checks (each failure throws tessera::Error with a one-line reason naming stage and action):
//   - deadlock: no stage can move and some have not finished; names every stuck stage, the
//     action it waits in and its unmatched transfers;
//   - a transfer to the wrong peer (not the stage that holds the neighbouring virtual stage), a
//     matched send and receive that disagree on the tensor (micro-batch, producing chunk);
//   - Forward(mb, c) before its input activation arrived (except on virtual stage 0), Backward
//     before its Forward or before its output gradient arrived (except on the last virtual
//     stage), a send of a tensor not computed yet;
//   - every Forward and Backward of every (micro-batch, chunk) exactly once on every stage.
#pragma once

#include <vector>

#include "parallel/pipeline_schedule.h"
#include "parallel/pipeline_timeline.h"

namespace tessera {

// Seconds per action. Forward/backward are per model chunk: with interleaving each chunk holds
// 1/vpp of the stage's layers, so pass the per-stage costs divided by vpp for a fair comparison.
struct PipelineCosts {
  double forward = 1.0;
  double backward = 2.0;
  double p2p = 0.0;  // per transfer, from the moment both sides have posted it
};

struct SimulationResult {
  std::vector<StageTimeline> timelines;  // [stage], starting at time 0
  TimelineStats stats;
};

SimulationResult simulate_pipeline(const PipelineSchedule& schedule, const PipelineCosts& costs);

}  // namespace tessera
