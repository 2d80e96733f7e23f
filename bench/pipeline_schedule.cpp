// Pipeline schedules in the simulator (parallel/pipeline_simulator.h): step time, bubble fraction
// (simulated and analytic) and peak live activations of GPipe, 1F1B and interleaved 1F1B for one
// (pp, vpp, m) and per-stage costs, then a picture of the interleaved schedule (1F1B when
// vpp = 1) drawn from its Chrome trace: the trace is written, read back and rendered, the same
// path a trace recorded on real ranks takes (--from-trace renders such a trace instead).
// docs/images/pipeline_interleaved_4x2.svg is `pipeline_schedule --svg ...` with the defaults.
//   pipeline_schedule [--pp 4] [--vpp 2] [--microbatches 8] [--forward-ms 1] [--backward-ms 2]
//                     [--p2p-ms 0] [--trace OUT.json] [--svg OUT.svg] [--from-trace IN.json]
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <sstream>

#include "core/check.h"
#include "parallel/pipeline_simulator.h"
#include "parallel/pipeline_trace.h"

namespace {

using namespace tessera;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  TS_CHECK(in.good(), "pipeline_schedule: cannot read ", path);
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  TS_CHECK(out.good(), "pipeline_schedule: cannot write ", path);
}

std::string join_ints(const std::vector<int>& values) {
  std::string out;
  for (int v : values) {
    if (!out.empty()) out += ',';
    out += std::to_string(v);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Simulated GPipe / 1F1B / interleaved 1F1B: bubble fraction, live activations, schedule picture"};
  int pp = 4, vpp = 2, m = 8;
  double forward_ms = 1, backward_ms = 2, p2p_ms = 0;
  std::string trace_path, svg_path, from_trace;
  app.add_option("--pp", pp, "pipeline_model_parallel_size")->check(CLI::PositiveNumber);
  app.add_option("--vpp", vpp, "virtual_pipeline_model_parallel_size of the interleaved schedule (1: skip it)")
      ->check(CLI::PositiveNumber);
  app.add_option("--microbatches", m, "micro-batches per step")->check(CLI::PositiveNumber);
  app.add_option("--forward-ms", forward_ms, "forward time of one stage (all its chunks) per micro-batch");
  app.add_option("--backward-ms", backward_ms, "backward time of one stage per micro-batch");
  app.add_option("--p2p-ms", p2p_ms, "time of one point-to-point transfer");
  app.add_option("--trace", trace_path, "write the pictured schedule's Chrome trace (Perfetto) here");
  app.add_option("--svg", svg_path, "write the picture of the schedule here");
  app.add_option("--from-trace", from_trace, "picture and analyse this recorded trace instead of simulating");
  CLI11_PARSE(app, argc, argv);

  try {
    std::vector<StageTimeline> pictured;
    ScheduleSvgOptions svg;
    if (!from_trace.empty()) {
      pictured = timelines_from_chrome_trace(read_file(from_trace));
      TimelineStats stats = timeline_stats(pictured);
      fmt::print("# {}: {} stages, step {:.3f} ms, bubble {:.4f}, peak live (micro-batch, chunk) per stage {}\n",
                 from_trace, pictured.size(), stats.makespan * 1e3, stats.mean_bubble_fraction,
                 join_ints(stats.peak_live_activations));
      svg.title = fmt::format("Pipeline schedule recorded in {}", from_trace);
      svg.subtitle =
          fmt::format("{} stages, bubble fraction {:.1f}%", pictured.size(), 100 * stats.mean_bubble_fraction);
    } else {
      std::vector<PipelineScheduleOptions> schedules = {{PipelineScheduleKind::GPipe, pp, 1, m},
                                                        {PipelineScheduleKind::OneFOneB, pp, 1, m}};
      if (vpp > 1) schedules.push_back({PipelineScheduleKind::Interleaved1F1B, pp, vpp, m});
      fmt::print("# simulated step, pp {}, m {}, per stage and micro-batch: forward {} ms, backward {} ms; p2p {} ms\n",
                 pp, m, forward_ms, backward_ms, p2p_ms);
      fmt::print("# live: peak (micro-batch, chunk) activations per stage; a chunk holds 1/vpp of a stage's layers\n");
      fmt::print("{:<18} {:>4} {:>10} {:>12} {:>12}  {}\n", "schedule", "vpp", "step(ms)", "bubble(sim)", "bubble(ana)",
                 "live");
      for (const auto& o : schedules) {
        PipelineSchedule schedule = build_pipeline_schedule(o);
        // Per-chunk costs: each chunk holds 1/vpp of the stage's layers.
        SimulationResult r =
            simulate_pipeline(schedule, {forward_ms * 1e-3 / o.vpp, backward_ms * 1e-3 / o.vpp, p2p_ms * 1e-3});
        fmt::print("{:<18} {:>4} {:>10.3f} {:>12.4f} {:>12.4f}  {}\n", schedule_kind_name(o.kind), o.vpp,
                   r.stats.makespan * 1e3, r.stats.mean_bubble_fraction, analytic_bubble_fraction(o),
                   join_ints(r.stats.peak_live_activations));
        if (&o != &schedules.back()) continue;
        // The pictured schedule goes through its trace, as a recorded one would.
        std::string trace = chrome_trace_json(r.timelines);
        if (!trace_path.empty()) write_file(trace_path, trace);
        pictured = timelines_from_chrome_trace(trace);
        svg.title = fmt::format("{} schedule, {} stages x {} chunks, {} micro-batches (simulated)",
                                schedule_kind_name(o.kind), pp, o.vpp, m);
        svg.subtitle = fmt::format(
            "forward {} ms + backward {} ms per stage and micro-batch, p2p {} ms: bubble {:.1f}% (analytic {:.1f}%; "
            "1f1b {:.1f}%)",
            forward_ms, backward_ms, p2p_ms, 100 * r.stats.mean_bubble_fraction, 100 * analytic_bubble_fraction(o),
            100 * analytic_bubble_fraction({PipelineScheduleKind::OneFOneB, pp, 1, m}));
      }
    }
    if (!svg_path.empty()) write_file(svg_path, schedule_svg(pictured, svg));
  } catch (const Error& e) {
    fmt::print(stderr, "pipeline_schedule: {}\n", e.what());
    return 1;
  }
  return 0;
}
