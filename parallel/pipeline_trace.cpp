// Chrome trace JSON and SVG rendering of pipeline timelines (see pipeline_trace.h).
#include "parallel/pipeline_trace.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>

#include "core/check.h"

namespace tessera {

namespace {

using Json = nlohmann::json;
using Kind = PipelineAction::Kind;

std::string category(const PipelineAction& a) {
  if (a.kind == Kind::Forward) return "forward";
  if (a.kind == Kind::Backward) return "backward";
  bool sends = false, recvs = false;
  for (const auto& t : a.transfers) (t.is_send() ? sends : recvs) = true;
  return sends && recvs ? "send,recv" : sends ? "send" : "recv";
}

std::string xml_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Forward boxes in blues, backward in oranges; later chunks lighter.
std::string box_colour(const PipelineAction& a) {
  static const char* forward[] = {"#2f6fb0", "#7fb2e5", "#b9d6f2", "#1b4a7a"};
  static const char* backward[] = {"#d9661f", "#f5a86b", "#fbd2ae", "#9c4310"};
  return (a.kind == Kind::Forward ? forward : backward)[a.chunk % 4];
}

// "F3.1" / "B3.1" -> (forward, micro_batch, chunk).
std::optional<std::tuple<bool, int, int>> parse_compute_label(const std::string& label) {
  int mb = 0, chunk = 0;
  char tail = 0;
  if (label.size() < 4 || (label[0] != 'F' && label[0] != 'B')) return std::nullopt;
  if (std::sscanf(label.c_str() + 1, "%d.%d%c", &mb, &chunk, &tail) != 2) return std::nullopt;
  return std::make_tuple(label[0] == 'F', mb, chunk);
}

// The inverse of describe(P2PTransfer): "send_forward F3.1 -> 2".
std::optional<P2PTransfer> parse_transfer(const std::string& text) {
  std::istringstream in(text);
  std::string type_name, tensor, arrow, rest;
  int peer = 0;
  if (!(in >> type_name >> tensor >> arrow >> peer) || (in >> rest)) return std::nullopt;
  auto label = parse_compute_label(tensor);
  if (!label) return std::nullopt;
  for (auto type : {P2PTransfer::Type::SendForward, P2PTransfer::Type::RecvForward, P2PTransfer::Type::SendBackward,
                    P2PTransfer::Type::RecvBackward}) {
    if (transfer_type_name(type) != type_name) continue;
    P2PTransfer t{type, peer, std::get<1>(*label), std::get<2>(*label)};
    if (std::get<0>(*label) != t.is_forward() || arrow != (t.is_send() ? "->" : "<-")) return std::nullopt;
    return t;
  }
  return std::nullopt;
}

}  // namespace

std::string chrome_trace_json(const std::vector<StageTimeline>& timelines) {
  Json events = Json::array();
  for (const auto& t : timelines) {
    events.push_back({{"name", "process_name"},
                      {"ph", "M"},
                      {"pid", t.stage},
                      {"args", {{"name", detail::concat("stage ", t.stage)}}}});
    events.push_back(
        {{"name", "process_sort_index"}, {"ph", "M"}, {"pid", t.stage}, {"args", {{"sort_index", t.stage}}}});
    for (const auto& e : t.events) {
      Json args;
      if (e.action.is_compute()) {
        args = {{"micro_batch", e.action.micro_batch}, {"chunk", e.action.chunk}};
      } else {
        Json transfers = Json::array();
        for (const auto& tr : e.action.transfers) transfers.push_back(describe(tr));
        args = {{"transfers", transfers}};
      }
      events.push_back({{"name", e.action.name()},
                        {"cat", category(e.action)},
                        {"ph", "X"},
                        {"ts", e.begin * 1e6},
                        {"dur", (e.end - e.begin) * 1e6},
                        {"pid", t.stage},
                        {"tid", 0},
                        {"args", args}});
    }
  }
  return Json{{"traceEvents", events}, {"displayTimeUnit", "ms"}}.dump();
}

void write_chrome_trace(const std::filesystem::path& path, const std::vector<StageTimeline>& timelines) {
  std::ofstream out(path, std::ios::binary);
  TS_CHECK(out.good(), "cannot write the pipeline trace to ", path.string());
  out << chrome_trace_json(timelines);
  out.close();
  TS_CHECK(out.good(), "writing the pipeline trace to ", path.string(), " failed");
}

std::vector<StageTimeline> timelines_from_chrome_trace(const std::string& json) {
  Json trace;
  try {
    trace = Json::parse(json);
  } catch (const Json::exception& e) {
    TS_CHECK(false, "pipeline trace: not JSON: ", e.what());
  }
  TS_CHECK(trace.is_object() && trace.contains("traceEvents") && trace["traceEvents"].is_array(),
           "pipeline trace: no \"traceEvents\" array");
  std::map<int, StageTimeline> stages;
  const Json& events = trace["traceEvents"];
  for (size_t i = 0; i < events.size(); ++i) {
    const Json& e = events[i];
    if (!e.is_object() || e.value("ph", "") != "X") continue;
    const bool well_formed = e.contains("name") && e["name"].is_string() && e.contains("pid") &&
                             e["pid"].is_number_integer() && e.contains("ts") && e["ts"].is_number() &&
                             e.contains("dur") && e["dur"].is_number();
    TS_CHECK(well_formed, "pipeline trace: event ", i, " lacks a string name, an integer pid or numeric ts/dur");
    const std::string name = e["name"].get<std::string>();
    PipelineAction action;
    if (auto label = parse_compute_label(name)) {
      auto [forward, mb, chunk] = *label;
      action = forward ? PipelineAction::forward(mb, chunk) : PipelineAction::backward(mb, chunk);
    } else {
      std::vector<P2PTransfer> transfers;
      if (e.contains("args") && e["args"].contains("transfers") && e["args"]["transfers"].is_array()) {
        for (const Json& t : e["args"]["transfers"]) {
          auto transfer = t.is_string() ? parse_transfer(t.get<std::string>()) : std::nullopt;
          TS_CHECK(transfer, "pipeline trace: event ", i, " (", name,
                   ") has a transfer that is not like "
                   "\"send_forward F3.1 -> 2\": ",
                   t.dump());
          transfers.push_back(*transfer);
        }
      }
      TS_CHECK(!transfers.empty(), "pipeline trace: event ", i, " (", name,
               ") is neither F<micro_batch>.<chunk>, B<micro_batch>.<chunk> nor a transfer with args.transfers");
      action = PipelineAction::communicate(std::move(transfers));
    }
    const int stage = e["pid"].get<int>();
    const double begin = e["ts"].get<double>() * 1e-6;
    StageTimeline& timeline = stages[stage];
    timeline.stage = stage;
    timeline.events.push_back({begin, begin + e["dur"].get<double>() * 1e-6, action});
  }
  std::vector<StageTimeline> out;
  for (auto& [stage, timeline] : stages) {
    std::stable_sort(timeline.events.begin(), timeline.events.end(),
                     [](const TimedAction& a, const TimedAction& b) { return a.begin < b.begin; });
    out.push_back(std::move(timeline));
  }
  return out;
}

std::string schedule_svg(const std::vector<StageTimeline>& timelines, const ScheduleSvgOptions& o) {
  double t0 = std::numeric_limits<double>::infinity(), t1 = -t0;
  std::set<std::pair<int, int>> legend;  // (kind, chunk) present
  for (const auto& t : timelines) {
    for (const auto& e : t.events) {
      t0 = std::min(t0, e.begin);
      t1 = std::max(t1, e.end);
      if (e.action.is_compute()) legend.insert({int(e.action.kind), e.action.chunk});
    }
  }
  TS_CHECK(t1 > t0, "schedule_svg: the timelines hold no time span");
  const double left = 80, right = 20, top = 56, gap = 6;
  const double plot = o.width - left - right;
  const double rows_bottom = top + double(timelines.size()) * (o.row_height + gap);
  const double height = rows_bottom + 40;
  auto x = [&](double t) { return left + (t - t0) / (t1 - t0) * plot; };

  std::ostringstream svg;
  svg.precision(5);
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << o.width << "\" height=\"" << height
      << "\" font-family=\"Helvetica, Arial, sans-serif\">\n";
  svg << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg << "<text x=\"" << left << "\" y=\"20\" font-size=\"15\" font-weight=\"bold\">" << xml_escape(o.title)
      << "</text>\n";
  svg << "<text x=\"" << left << "\" y=\"40\" font-size=\"12\">" << xml_escape(o.subtitle) << "</text>\n";
  for (size_t r = 0; r < timelines.size(); ++r) {
    const double y = top + double(r) * (o.row_height + gap);
    svg << "<text x=\"" << left - 8 << "\" y=\"" << y + o.row_height / 2 + 4
        << "\" font-size=\"12\" text-anchor=\"end\">stage " << timelines[r].stage << "</text>\n";
    svg << "<rect x=\"" << left << "\" y=\"" << y << "\" width=\"" << plot << "\" height=\"" << o.row_height
        << "\" fill=\"#f2f2f2\"/>\n";
    for (const auto& e : timelines[r].events) {
      if (!e.action.is_compute()) continue;
      const double bx = x(e.begin), bw = x(e.end) - bx;
      svg << "<rect class=\"" << (e.action.kind == Kind::Forward ? "forward" : "backward") << "\" x=\"" << bx
          << "\" y=\"" << y << "\" width=\"" << bw << "\" height=\"" << o.row_height << "\" fill=\""
          << box_colour(e.action) << "\" stroke=\"white\" stroke-width=\"0.5\"><title>" << e.action.name()
          << "</title></rect>\n";
      if (bw >= 10) {
        svg << "<text x=\"" << bx + bw / 2 << "\" y=\"" << y + o.row_height / 2 + 4
            << "\" font-size=\"11\" text-anchor=\"middle\" fill=\"" << (e.action.chunk % 4 == 0 ? "white" : "black")
            << "\">" << e.action.micro_batch << "</text>\n";
      }
    }
  }
  double lx = left;
  for (const auto& [kind, chunk] : legend) {
    PipelineAction sample =
        Kind(kind) == Kind::Forward ? PipelineAction::forward(0, chunk) : PipelineAction::backward(0, chunk);
    std::string label = detail::concat(Kind(kind) == Kind::Forward ? "forward" : "backward", ", chunk ", chunk);
    svg << "<rect x=\"" << lx << "\" y=\"" << rows_bottom + 10 << "\" width=\"14\" height=\"14\" fill=\""
        << box_colour(sample) << "\"/>\n";
    svg << "<text x=\"" << lx + 20 << "\" y=\"" << rows_bottom + 22 << "\" font-size=\"12\">" << label << "</text>\n";
    lx += 140;
  }
  svg << "<text x=\"" << lx << "\" y=\"" << rows_bottom + 22
      << "\" font-size=\"12\" fill=\"#666\">numbers: micro-batch; grey: idle (bubble)</text>\n";
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace tessera
