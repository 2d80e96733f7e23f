// Timelines of a pipeline step: when each stage ran each action of its schedule, and what that
// says about the step (bubble fraction, activations alive). One source is the simulator
// (pipeline_simulator.h, virtual time); the other is an executor on real ranks, which wraps each
// action it runs in TimelineRecorder::record with wall-clock times. Both produce the same
// StageTimeline, so statistics, Chrome traces and pictures (pipeline_trace.h) serve both.
//
// Times are seconds since the recorder's origin. Stages of a real run should share an origin
// (e.g. the moment a barrier over the pipeline group returned) so their timelines line up.
#pragma once

#include <chrono>
#include <vector>

#include "parallel/pipeline_schedule.h"

namespace tessera {

struct TimedAction {
  double begin = 0;  // seconds since the origin
  double end = 0;
  PipelineAction action;
};

struct StageTimeline {
  int stage = 0;                    // rank in the pipeline group
  std::vector<TimedAction> events;  // in execution order
};

// Collects one stage's timeline. Not thread-safe: one recorder per executing thread.
class TimelineRecorder {
 public:
  using Clock = std::chrono::steady_clock;

  TimelineRecorder(int stage, Clock::time_point origin) : origin_(origin) { timeline_.stage = stage; }

  // An action that ran from `begin` to `end` (wall clock).
  void record(Clock::time_point begin, Clock::time_point end, const PipelineAction& action);
  // An action that ran from `begin` to `end` seconds after the origin (virtual time).
  void record(double begin, double end, const PipelineAction& action);

  const StageTimeline& timeline() const { return timeline_; }

 private:
  Clock::time_point origin_;
  StageTimeline timeline_;
};

struct TimelineStats {
  double makespan = 0;                  // latest end - earliest begin over all stages
  std::vector<double> compute_seconds;  // per stage: time inside Forward and Backward
  std::vector<double> bubble_fraction;  // per stage: 1 - compute_seconds / makespan
  double mean_bubble_fraction = 0;
  // Per stage: the most (micro_batch, chunk) pairs whose Forward had run and Backward had not,
  // i.e. activations held for a backward. With interleaving one pair is one chunk's share.
  std::vector<int> peak_live_activations;
};

// Statistics of the timelines of all stages (stage s at index s).
TimelineStats timeline_stats(const std::vector<StageTimeline>& timelines);

// The peak number of live (micro_batch, chunk) activations of one stage's action order.
int peak_live_activations(const std::vector<PipelineAction>& actions);

}  // namespace tessera
