// Timeline recording and statistics (see pipeline_timeline.h).
#include "parallel/pipeline_timeline.h"

#include <algorithm>
#include <limits>

#include "core/check.h"

namespace tessera {

void TimelineRecorder::record(Clock::time_point begin, Clock::time_point end, const PipelineAction& action) {
  using Seconds = std::chrono::duration<double>;
  record(Seconds(begin - origin_).count(), Seconds(end - origin_).count(), action);
}

void TimelineRecorder::record(double begin, double end, const PipelineAction& action) {
  TS_CHECK(end >= begin, "pipeline timeline: ", action.name(), " on stage ", timeline_.stage, " ends (", end,
           " s) before it begins (", begin, " s)");
  timeline_.events.push_back({begin, end, action});
}

int peak_live_activations(const std::vector<PipelineAction>& actions) {
  int live = 0, peak = 0;
  for (const auto& a : actions) {
    if (a.kind == PipelineAction::Kind::Forward) peak = std::max(peak, ++live);
    if (a.kind == PipelineAction::Kind::Backward) --live;
  }
  return peak;
}

TimelineStats timeline_stats(const std::vector<StageTimeline>& timelines) {
  TimelineStats stats;
  double first = std::numeric_limits<double>::infinity();
  double last = -first;
  for (const auto& t : timelines) {
    for (const auto& e : t.events) {
      first = std::min(first, e.begin);
      last = std::max(last, e.end);
    }
  }
  stats.makespan = timelines.empty() || last < first ? 0.0 : last - first;
  for (const auto& t : timelines) {
    double compute = 0;
    std::vector<PipelineAction> order;
    for (const auto& e : t.events) {
      if (e.action.is_compute()) compute += e.end - e.begin;
      order.push_back(e.action);
    }
    stats.compute_seconds.push_back(compute);
    stats.bubble_fraction.push_back(stats.makespan > 0 ? 1.0 - compute / stats.makespan : 0.0);
    stats.peak_live_activations.push_back(peak_live_activations(order));
  }
  if (!timelines.empty()) {
    double sum = 0;
    for (double b : stats.bubble_fraction) sum += b;
    stats.mean_bubble_fraction = sum / double(timelines.size());
  }
  return stats;
}

}  // namespace tessera
