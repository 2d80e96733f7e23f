// Timelines, their statistics, and their pictures: the recorder converts wall-clock times,
// statistics of a hand-made timeline match the hand computation, the Chrome trace parses back
// (with an independent JSON parser) to one complete event per action with microsecond times,
// and the SVG draws one box per forward/backward.
#include "parallel/pipeline_trace.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "core/check.h"
#include "parallel/pipeline_simulator.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using Json = nlohmann::json;
using Clock = TimelineRecorder::Clock;

TEST(PipelineTimelineTest, RecorderTakesWallClockTimesRelativeToItsOrigin) {
  Clock::time_point origin = Clock::now();
  TimelineRecorder recorder(3, origin);
  recorder.record(origin + std::chrono::milliseconds(1), origin + std::chrono::milliseconds(3),
                  PipelineAction::forward(2, 1));
  ASSERT_EQ(recorder.timeline().events.size(), 1u);
  EXPECT_EQ(recorder.timeline().stage, 3);
  EXPECT_NEAR(recorder.timeline().events[0].begin, 0.001, 1e-12);
  EXPECT_NEAR(recorder.timeline().events[0].end, 0.003, 1e-12);
  EXPECT_EQ(recorder.timeline().events[0].action.name(), "F2.1");
  try {
    recorder.record(2.0, 1.0, PipelineAction::backward(2, 1));
    FAIL() << "an action ending before it begins was recorded";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("B2.1 on stage 3 ends (1 s) before it begins (2 s)"));
  }
}

TEST(PipelineTimelineTest, StatisticsOfAHandMadeTimeline) {
  // Stage 0: F0 [0,1], F1 [1,2], B0 [3,5], B1 [5,7]; stage 1: F0 [1,2], B0 [2,3], F1 [3,4], B1 [4,6].
  // Makespan 7; busy 6 and 5; peak live 2 and 1.
  TimelineRecorder s0(0, {}), s1(1, {});
  s0.record(0.0, 1.0, PipelineAction::forward(0, 0));
  s0.record(1.0, 2.0, PipelineAction::forward(1, 0));
  s0.record(2.0, 3.0, PipelineAction::communicate({{P2PTransfer::Type::RecvBackward, 1, 0, 0}}));
  s0.record(3.0, 5.0, PipelineAction::backward(0, 0));
  s0.record(5.0, 7.0, PipelineAction::backward(1, 0));
  s1.record(1.0, 2.0, PipelineAction::forward(0, 0));
  s1.record(2.0, 3.0, PipelineAction::backward(0, 0));
  s1.record(3.0, 4.0, PipelineAction::forward(1, 0));
  s1.record(4.0, 6.0, PipelineAction::backward(1, 0));
  TimelineStats stats = timeline_stats({s0.timeline(), s1.timeline()});
  EXPECT_DOUBLE_EQ(stats.makespan, 7.0);
  EXPECT_THAT(stats.compute_seconds, ::testing::ElementsAre(6.0, 5.0));
  EXPECT_DOUBLE_EQ(stats.bubble_fraction[0], 1.0 / 7.0);
  EXPECT_DOUBLE_EQ(stats.bubble_fraction[1], 2.0 / 7.0);
  EXPECT_DOUBLE_EQ(stats.mean_bubble_fraction, 1.5 / 7.0);
  EXPECT_THAT(stats.peak_live_activations, ::testing::ElementsAre(2, 1));
}

TEST(PipelineTraceTest, ChromeTraceHasOneCompleteEventPerActionInMicroseconds) {
  PipelineSchedule schedule = build_pipeline_schedule({PipelineScheduleKind::Interleaved1F1B, 2, 2, 2});
  SimulationResult sim = simulate_pipeline(schedule, {0.5e-3, 1e-3, 1e-4});
  Json trace = Json::parse(chrome_trace_json(sim.timelines));
  ASSERT_TRUE(trace.contains("traceEvents"));
  std::vector<std::vector<Json>> complete(2);
  std::set<std::pair<int, std::string>> process_names;
  for (const Json& e : trace["traceEvents"]) {
    if (e["ph"] == "M") {
      if (e["name"] == "process_name")
        process_names.insert({e["pid"].get<int>(), e["args"]["name"].get<std::string>()});
      continue;
    }
    ASSERT_EQ(e["ph"], "X");
    complete.at(e["pid"].get<size_t>()).push_back(e);
  }
  EXPECT_EQ(process_names, (std::set<std::pair<int, std::string>>{{0, "stage 0"}, {1, "stage 1"}}));
  for (int s = 0; s < 2; ++s) {
    const auto& events = sim.timelines[s].events;
    ASSERT_EQ(complete[s].size(), events.size());
    for (size_t i = 0; i < events.size(); ++i) {
      const Json& e = complete[s][i];
      const PipelineAction& a = events[i].action;
      EXPECT_EQ(e["name"], a.name());
      EXPECT_NEAR(e["ts"].get<double>(), events[i].begin * 1e6, 1e-6);
      EXPECT_NEAR(e["dur"].get<double>(), (events[i].end - events[i].begin) * 1e6, 1e-6);
      EXPECT_EQ(e["tid"], 0);
      if (a.kind == PipelineAction::Kind::Forward) {
        EXPECT_EQ(e["cat"], "forward");
        EXPECT_EQ(e["args"]["micro_batch"], a.micro_batch);
        EXPECT_EQ(e["args"]["chunk"], a.chunk);
      } else if (a.kind == PipelineAction::Kind::Backward) {
        EXPECT_EQ(e["cat"], "backward");
      } else {
        bool sends = false, recvs = false;
        for (const auto& t : a.transfers) (t.is_send() ? sends : recvs) = true;
        EXPECT_EQ(e["cat"], sends && recvs ? "send,recv" : sends ? "send" : "recv");
        ASSERT_EQ(e["args"]["transfers"].size(), a.transfers.size());
        EXPECT_EQ(e["args"]["transfers"][0], describe(a.transfers[0]));
      }
    }
  }
}

TEST(PipelineTraceTest, ATraceReadsBackIntoTheSameTimelines) {
  SimulationResult sim =
      simulate_pipeline(build_pipeline_schedule({PipelineScheduleKind::Interleaved1F1B, 4, 2, 4}), {0.5, 1.0, 0.25});
  std::vector<StageTimeline> back = timelines_from_chrome_trace(chrome_trace_json(sim.timelines));
  ASSERT_EQ(back.size(), sim.timelines.size());
  for (size_t s = 0; s < back.size(); ++s) {
    EXPECT_EQ(back[s].stage, sim.timelines[s].stage);
    ASSERT_EQ(back[s].events.size(), sim.timelines[s].events.size());
    for (size_t i = 0; i < back[s].events.size(); ++i) {
      EXPECT_EQ(back[s].events[i].action, sim.timelines[s].events[i].action) << "stage " << s << " event " << i;
      EXPECT_NEAR(back[s].events[i].begin, sim.timelines[s].events[i].begin, 1e-9);
      EXPECT_NEAR(back[s].events[i].end, sim.timelines[s].events[i].end, 1e-9);
    }
  }
  EXPECT_NEAR(timeline_stats(back).mean_bubble_fraction, sim.stats.mean_bubble_fraction, 1e-9);
}

TEST(PipelineTraceTest, MalformedTracesAreRefusedNamingTheEvent) {
  auto error_of = [](const std::string& json) {
    try {
      timelines_from_chrome_trace(json);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(error_of("{"), HasSubstr("pipeline trace: not JSON"));
  EXPECT_THAT(error_of("{\"events\": []}"), HasSubstr("no \"traceEvents\" array"));
  EXPECT_THAT(error_of(R"({"traceEvents": [{"ph": "X", "name": "F0.0", "pid": 0, "ts": 0}]})"),
              HasSubstr("event 0 lacks a string name, an integer pid or numeric ts/dur"));
  EXPECT_THAT(
      error_of(R"({"traceEvents": [{"ph": "M"}, {"ph": "X", "name": "optimizer", "pid": 0, "ts": 0, "dur": 1}]})"),
      HasSubstr("event 1 (optimizer) is neither F<micro_batch>.<chunk>"));
  EXPECT_THAT(error_of(R"({"traceEvents": [{"ph": "X", "name": "send_forward", "pid": 0, "ts": 0, "dur": 1,
                                            "args": {"transfers": ["send_forward B0.0 -> 1"]}}]})"),
              HasSubstr("event 0 (send_forward) has a transfer that is not like"));
}

TEST(PipelineTraceTest, WriteChromeTraceWritesTheJsonOrNamesThePath) {
  SimulationResult sim = simulate_pipeline(build_pipeline_schedule({PipelineScheduleKind::OneFOneB, 2, 1, 2}), {});
  auto path =
      std::filesystem::temp_directory_path() / ("tessera_pipeline_trace_" + std::to_string(::getpid()) + ".json");
  write_chrome_trace(path, sim.timelines);
  std::ifstream in(path);
  std::stringstream contents;
  contents << in.rdbuf();
  EXPECT_EQ(contents.str(), chrome_trace_json(sim.timelines));
  std::filesystem::remove(path);
  try {
    write_chrome_trace("/nonexistent_dir_for_tessera/trace.json", sim.timelines);
    FAIL() << "wrote into a missing folder";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("cannot write the pipeline trace to /nonexistent_dir_for_tessera/trace.json"));
  }
}

TEST(PipelineTraceTest, SvgDrawsOneBoxPerComputeAction) {
  PipelineSchedule schedule = build_pipeline_schedule({PipelineScheduleKind::Interleaved1F1B, 4, 2, 8});
  SimulationResult sim = simulate_pipeline(schedule, {0.5, 0.5, 0});
  std::string svg =
      schedule_svg(sim.timelines, {.title = "a < b & c", .subtitle = "bubble", .width = 1200, .row_height = 32});
  EXPECT_THAT(svg, StartsWith("<svg xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_THAT(svg, HasSubstr("a &lt; b &amp; c"));
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
  auto count = [&](const std::string& pattern) {
    std::regex re(pattern);
    return std::distance(std::sregex_iterator(svg.begin(), svg.end(), re), std::sregex_iterator());
  };
  EXPECT_EQ(count("<rect class=\"forward\""), 4 * 8 * 2);
  EXPECT_EQ(count("<rect class=\"backward\""), 4 * 8 * 2);
  EXPECT_EQ(count("<title>F3.1</title>"), 4);  // once per stage
  EXPECT_THROW(schedule_svg({}, {}), Error);
}

}  // namespace
}  // namespace tessera
