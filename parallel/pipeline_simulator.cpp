// Virtual-time execution of pipeline schedules with rendezvous point-to-point matching (see
// pipeline_simulator.h).
#include "parallel/pipeline_simulator.h"

#include <algorithm>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <tuple>

#include "core/check.h"

namespace tessera {

namespace {

using Kind = PipelineAction::Kind;
using MbChunk = std::pair<int, int>;

std::string tensor_name(bool forward, const MbChunk& t) { return compute_label(forward, t.first, t.second); }

// A posted transfer waiting for its partner: which stage, which transfer of its current action.
struct Posted {
  int stage;
  size_t index;
};

class Simulator {
 public:
  Simulator(const PipelineSchedule& schedule, const PipelineCosts& costs)
      : schedule_(schedule),
        costs_(costs),
        pp_(schedule.options.pp),
        vpp_(schedule.options.vpp),
        m_(schedule.options.num_microbatches),
        stages_(size_t(pp_)) {
    TS_CHECK(int(schedule.stages.size()) == pp_, "pipeline schedule: ", schedule.stages.size(),
             " stage action lists for pipeline_model_parallel_size ", pp_);
    TS_CHECK(costs.forward >= 0 && costs.backward >= 0 && costs.p2p >= 0,
             "pipeline simulator: costs must be >= 0, got forward ", costs.forward, ", backward ", costs.backward,
             ", p2p ", costs.p2p);
    for (int s = 0; s < pp_; ++s) stages_[s].recorder.emplace(s, TimelineRecorder::Clock::time_point{});
  }

  SimulationResult run() {
    for (bool progress = true; progress;) {
      progress = false;
      for (int s = 0; s < pp_; ++s) progress |= advance(s);
    }
    report_deadlock();
    SimulationResult result;
    for (int s = 0; s < pp_; ++s) {
      check_complete(s);
      result.timelines.push_back(stages_[s].recorder->timeline());
    }
    result.stats = timeline_stats(result.timelines);
    return result;
  }

 private:
  struct Channel {
    std::deque<Posted> sends, recvs;
  };
  struct StageState {
    size_t pc = 0;                            // next action
    double clock = 0;                         // when the stage is free for it
    bool posted = false;                      // the current Communicate action's transfers are posted
    std::vector<std::optional<double>> done;  // completion time per transfer of the current action
    std::set<MbChunk> forwarded, backwarded, activations, gradients;  // computed / received
    std::optional<TimelineRecorder> recorder;
  };

  const std::vector<PipelineAction>& actions(int s) const { return schedule_.stages[s]; }
  int virtual_stage(int s, int chunk) const { return chunk * pp_ + s; }
  int last_virtual_stage() const { return pp_ * vpp_ - 1; }
  std::string where(int s, const PipelineAction& a) const { return detail::concat("stage ", s, " ", a.name()); }

  // Runs stage s as far as it can; true if it moved.
  bool advance(int s) {
    StageState& st = stages_[s];
    bool moved = false;
    while (st.pc < actions(s).size()) {
      const PipelineAction& a = actions(s)[st.pc];
      if (a.is_compute()) {
        compute(s, a);
      } else {
        if (!st.posted) {
          post(s, a);
          moved = true;
        }
        if (!std::all_of(st.done.begin(), st.done.end(), [](const auto& t) { return t.has_value(); })) break;
        double end = st.clock;
        for (const auto& t : st.done) end = std::max(end, *t);
        for (const auto& t : a.transfers) receive(s, a, t);
        st.recorder->record(st.clock, end, a);
        st.clock = end;
        st.posted = false;
      }
      ++st.pc;
      moved = true;
    }
    return moved;
  }

  void compute(int s, const PipelineAction& a) {
    StageState& st = stages_[s];
    TS_CHECK(a.micro_batch >= 0 && a.micro_batch < m_ && a.chunk >= 0 && a.chunk < vpp_,
             "pipeline schedule: ", where(s, a), " names a micro-batch or chunk outside m ", m_, " x vpp ", vpp_);
    const MbChunk key{a.micro_batch, a.chunk};
    const int vs = virtual_stage(s, a.chunk);
    if (a.kind == Kind::Forward) {
      TS_CHECK(!st.forwarded.count(key), "pipeline schedule: ", where(s, a), " runs twice");
      TS_CHECK(vs == 0 || st.activations.count(key), "pipeline schedule: ", where(s, a),
               " runs before its input activation was received");
      st.forwarded.insert(key);
    } else {
      TS_CHECK(!st.backwarded.count(key), "pipeline schedule: ", where(s, a), " runs twice");
      TS_CHECK(st.forwarded.count(key), "pipeline schedule: ", where(s, a), " runs before its forward");
      TS_CHECK(vs == last_virtual_stage() || st.gradients.count(key), "pipeline schedule: ", where(s, a),
               " runs before its output gradient was received");
      st.backwarded.insert(key);
    }
    double cost = a.kind == Kind::Forward ? costs_.forward : costs_.backward;
    st.recorder->record(st.clock, st.clock + cost, a);
    st.clock += cost;
  }

  // The stage that holds the virtual stage a transfer goes to or comes from.
  void check_peer(int s, const PipelineAction& a, const P2PTransfer& t) const {
    const int vs = virtual_stage(s, t.chunk);
    TS_CHECK(t.micro_batch >= 0 && t.micro_batch < m_ && t.chunk >= 0 && t.chunk < vpp_,
             "pipeline schedule: ", where(s, a), ": ", describe(t), " names a micro-batch or chunk outside m ", m_,
             " x vpp ", vpp_);
    // Activations flow to vs + 1, gradients to vs - 1; receives come from the other side.
    const bool downstream = t.type == P2PTransfer::Type::SendForward || t.type == P2PTransfer::Type::RecvBackward;
    const int other = downstream ? vs + 1 : vs - 1;
    TS_CHECK(other >= 0 && other <= last_virtual_stage(), "pipeline schedule: ", where(s, a), ": ", describe(t),
             " on virtual stage ", vs, ", which has no ", downstream ? "next" : "previous", " virtual stage");
    TS_CHECK(t.peer == other % pp_, "pipeline schedule: ", where(s, a), ": ", describe(t), " but virtual stage ", other,
             " lives on stage ", other % pp_);
  }

  void post(int s, const PipelineAction& a) {
    StageState& st = stages_[s];
    TS_CHECK(!a.transfers.empty(), "pipeline schedule: stage ", s, " has a Communicate action without transfers");
    st.posted = true;
    st.done.assign(a.transfers.size(), std::nullopt);
    for (size_t i = 0; i < a.transfers.size(); ++i) {
      const P2PTransfer& t = a.transfers[i];
      check_peer(s, a, t);
      const MbChunk key{t.micro_batch, t.chunk};
      if (t.type == P2PTransfer::Type::SendForward) {
        TS_CHECK(st.forwarded.count(key), "pipeline schedule: ", where(s, a), " sends ", tensor_name(true, key),
                 " before computing it");
      }
      if (t.type == P2PTransfer::Type::SendBackward) {
        TS_CHECK(st.backwarded.count(key), "pipeline schedule: ", where(s, a), " sends ", tensor_name(false, key),
                 " before computing it");
      }
      int sender = t.is_send() ? s : t.peer;
      int receiver = t.is_send() ? t.peer : s;
      Channel& channel = channels_[{sender, receiver, t.is_forward()}];
      (t.is_send() ? channel.sends : channel.recvs).push_back({s, i});
      match(channel);
    }
  }

  // Pairs the channel's oldest unmatched send and receive while both exist.
  void match(Channel& channel);

  void receive(int s, const PipelineAction& a, const P2PTransfer& t) {
    if (t.is_send()) return;
    StageState& st = stages_[s];
    auto& received = t.is_forward() ? st.activations : st.gradients;
    bool fresh = received.insert({t.micro_batch, t.chunk}).second;
    TS_CHECK(fresh, "pipeline schedule: ", where(s, a), " receives ",
             tensor_name(t.is_forward(), {t.micro_batch, t.chunk}), " a second time");
  }

  void report_deadlock() const {
    std::ostringstream stuck;
    for (int s = 0; s < pp_; ++s) {
      const StageState& st = stages_[s];
      if (st.pc >= actions(s).size()) continue;
      const PipelineAction& a = actions(s)[st.pc];
      stuck << (stuck.tellp() > 0 ? "; " : "") << "stage " << s << " waits in " << a.name() << " (";
      bool first = true;
      for (size_t i = 0; i < a.transfers.size(); ++i) {
        if (st.done[i]) continue;
        stuck << (first ? "" : ", ") << describe(a.transfers[i]) << " unmatched";
        first = false;
      }
      stuck << ")";
    }
    TS_CHECK(stuck.tellp() == 0, "pipeline deadlock: ", stuck.str());
  }

  void check_complete(int s) const {
    const StageState& st = stages_[s];
    for (int c = 0; c < vpp_; ++c) {
      for (int mb = 0; mb < m_; ++mb) {
        TS_CHECK(st.forwarded.count({mb, c}), "pipeline schedule: stage ", s, " never runs F", mb, ".", c);
        TS_CHECK(st.backwarded.count({mb, c}), "pipeline schedule: stage ", s, " never runs B", mb, ".", c);
      }
    }
  }

  const PipelineSchedule& schedule_;
  PipelineCosts costs_;
  int pp_, vpp_, m_;
  std::vector<StageState> stages_;
  std::map<std::tuple<int, int, bool>, Channel> channels_;  // (sender, receiver, forward)
};

void Simulator::match(Channel& channel) {
  while (!channel.sends.empty() && !channel.recvs.empty()) {
    Posted send = channel.sends.front(), recv = channel.recvs.front();
    channel.sends.pop_front();
    channel.recvs.pop_front();
    const PipelineAction& sa = actions(send.stage)[stages_[send.stage].pc];
    const PipelineAction& ra = actions(recv.stage)[stages_[recv.stage].pc];
    const P2PTransfer& st = sa.transfers[send.index];
    const P2PTransfer& rt = ra.transfers[recv.index];
    // The receiver's tensor is the input (forward) or output gradient (backward) of its
    // (micro_batch, chunk); the sender's must be the same micro-batch one virtual stage away.
    const int step = st.is_forward() ? 1 : -1;
    const bool same = st.micro_batch == rt.micro_batch &&
                      virtual_stage(recv.stage, rt.chunk) == virtual_stage(send.stage, st.chunk) + step;
    TS_CHECK(same, "pipeline schedule: stage ", recv.stage, " ", ra.name(), ": ", describe(rt),
             " is matched with stage ", send.stage, " ", sa.name(), ": ", describe(st),
             ", a different tensor (transfers match in posting order per sender, receiver and direction)");
    const double start = std::max(stages_[send.stage].clock, stages_[recv.stage].clock);
    stages_[send.stage].done[send.index] = start + costs_.p2p;
    stages_[recv.stage].done[recv.index] = start + costs_.p2p;
  }
}

}  // namespace

SimulationResult simulate_pipeline(const PipelineSchedule& schedule, const PipelineCosts& costs) {
  return Simulator(schedule, costs).run();
}

}  // namespace tessera
