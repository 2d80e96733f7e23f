// Pictures of pipeline timelines (pipeline_timeline.h), simulated or measured:
//   - Chrome trace JSON, the "traceEvents" object format that Perfetto (ui.perfetto.dev) and
//     chrome://tracing open: one process per stage (pid = stage, named "stage N" by a metadata
//     event), one complete event ("ph": "X") per action with "ts"/"dur" in microseconds, name
//     "F3.1" / "B3.1" (micro-batch 3, chunk 1) or the p2p function ("send_forward_recv_backward"),
//     category "forward", "backward", "send", "recv" or "send,recv" (a batch with both), and
//     args: micro_batch and chunk, or the transfers ("send_forward F3.1 -> 2", ...).
//   - Reading such a trace back into timelines (a trace recorded on real ranks, or merged from
//     several ranks' files, renders and analyses like a simulated one).
//   - An SVG of the schedule: one row per stage, a box per Forward/Backward coloured by
//     direction and chunk and labelled with the micro-batch, idle time left blank.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "parallel/pipeline_timeline.h"

namespace tessera {

std::string chrome_trace_json(const std::vector<StageTimeline>& timelines);
// Writes chrome_trace_json(timelines) to `path`; throws naming the path if it cannot.
void write_chrome_trace(const std::filesystem::path& path, const std::vector<StageTimeline>& timelines);

// The timelines of a trace written by chrome_trace_json (stages in pid order); events other than
// complete events are skipped. Throws naming the event when one does not describe an action.
std::vector<StageTimeline> timelines_from_chrome_trace(const std::string& json);

struct ScheduleSvgOptions {
  std::string title;     // first line above the rows
  std::string subtitle;  // second line (e.g. the bubble fractions)
  double width = 1200;   // pixels
  double row_height = 32;
};

std::string schedule_svg(const std::vector<StageTimeline>& timelines, const ScheduleSvgOptions& options);

}  // namespace tessera
