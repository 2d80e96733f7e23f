// GPipe, 1F1B and interleaved 1F1B action lists, following Megatron-core's schedules.py (see
// pipeline_schedule.h).
#include "parallel/pipeline_schedule.h"

#include <algorithm>
#include <initializer_list>
#include <optional>

#include "core/check.h"

namespace tessera {

namespace {

using Type = P2PTransfer::Type;
using Actions = std::vector<PipelineAction>;

// Appends a Communicate action made of the transfers that exist; nothing when none does (the
// first stage has no one to receive activations from, the last none to send them to, ...).
void communicate(Actions& actions, std::initializer_list<std::optional<P2PTransfer>> transfers) {
  std::vector<P2PTransfer> present;
  for (const auto& t : transfers) {
    if (t) present.push_back(*t);
  }
  if (!present.empty()) actions.push_back(PipelineAction::communicate(std::move(present)));
}

// One-chunk transfers of GPipe and 1F1B: the first stage neither receives activations nor sends
// gradients, the last neither sends activations nor receives gradients.
struct LinearPeers {
  int pp;
  int stage;
  std::optional<P2PTransfer> recv_forward(int mb) const {
    if (stage == 0) return std::nullopt;
    return P2PTransfer{Type::RecvForward, stage - 1, mb, 0};
  }
  std::optional<P2PTransfer> send_forward(int mb) const {
    if (stage == pp - 1) return std::nullopt;
    return P2PTransfer{Type::SendForward, stage + 1, mb, 0};
  }
  std::optional<P2PTransfer> recv_backward(int mb) const {
    if (stage == pp - 1) return std::nullopt;
    return P2PTransfer{Type::RecvBackward, stage + 1, mb, 0};
  }
  std::optional<P2PTransfer> send_backward(int mb) const {
    if (stage == 0) return std::nullopt;
    return P2PTransfer{Type::SendBackward, stage - 1, mb, 0};
  }
};

Actions gpipe_stage(int pp, int stage, int m) {
  LinearPeers peers{pp, stage};
  Actions actions;
  for (int i = 0; i < m; ++i) {
    communicate(actions, {peers.recv_forward(i)});
    actions.push_back(PipelineAction::forward(i, 0));
    communicate(actions, {peers.send_forward(i)});
  }
  for (int i = 0; i < m; ++i) {
    communicate(actions, {peers.recv_backward(i)});
    actions.push_back(PipelineAction::backward(i, 0));
    communicate(actions, {peers.send_backward(i)});
  }
  return actions;
}

// forward_backward_pipelining_with_interleaving without p2p overlap (Megatron's default path).
class InterleavedBuilder {
 public:
  InterleavedBuilder(int pp, int vpp, int stage, int m)
      : pp_(pp),
        vpp_(vpp),
        stage_(stage),
        total_(m * vpp),
        table_(interleaved_schedule_table(m, vpp, pp)),
        forward_received_(vpp, 0),
        backward_received_(vpp, 0) {}

  Actions build() {
    const int warmup = num_interleaved_warmup_microbatches(pp_, vpp_, stage_, total_ / vpp_);
    const int remaining = total_ - warmup;
    const bool all_in_warmup = remaining == 0;

    if (!first_virtual_stage(0)) communicate(actions_, {recv_forward(0)});

    for (int k = 0; k < warmup; ++k) {
      auto [recv_prev, next_forward_chunk] = receives_for(k, /*forward=*/true);
      if (k == total_ - 1) recv_prev = false;
      auto [mb, chunk] = forward_of(k);
      actions_.push_back(PipelineAction::forward(mb, chunk));
      std::optional<P2PTransfer> send = send_forward(k);
      std::optional<P2PTransfer> recv = recv_prev ? recv_forward(next_forward_chunk) : std::nullopt;
      // The last warmup iteration also posts the receive of the first gradient (of the last chunk).
      bool recv_grad = k == warmup - 1 && !all_in_warmup && stage_ != pp_ - 1;
      communicate(actions_, {send, recv, recv_grad ? recv_backward(vpp_ - 1) : std::nullopt});
    }

    for (int k = 0; k < remaining; ++k) {
      const int forward_k = k + warmup;
      auto [fmb, fchunk] = forward_of(forward_k);
      actions_.push_back(PipelineAction::forward(fmb, fchunk));
      auto [bmb, bchunk] = backward_of(k);
      actions_.push_back(PipelineAction::backward(bmb, bchunk));
      auto [recv_prev, next_forward_chunk] = receives_for(forward_k, /*forward=*/true);
      auto [recv_next, next_backward_chunk] = receives_for(k, /*forward=*/false);
      if (k == remaining - 1) recv_prev = false;  // the cooldown has no forwards left
      communicate(actions_, {send_forward(forward_k), send_backward(k),
                             recv_prev ? recv_forward(next_forward_chunk) : std::nullopt,
                             recv_next ? recv_backward(next_backward_chunk) : std::nullopt});
    }

    if (all_in_warmup && stage_ != pp_ - 1) communicate(actions_, {recv_backward(vpp_ - 1)});
    for (int k = remaining; k < total_; ++k) {
      auto [recv_next, next_backward_chunk] = receives_for(k, /*forward=*/false);
      if (k == total_ - 1) recv_next = false;
      auto [mb, chunk] = backward_of(k);
      actions_.push_back(PipelineAction::backward(mb, chunk));
      communicate(actions_, {send_backward(k), recv_next ? recv_backward(next_backward_chunk) : std::nullopt});
    }
    return std::move(actions_);
  }

 private:
  std::pair<int, int> forward_of(int k) const { return table_[k % total_]; }
  std::pair<int, int> backward_of(int k) const {
    auto [mb, chunk] = table_[k % total_];
    return {mb, vpp_ - 1 - chunk};
  }
  int chunk_of(int k, bool forward) const { return forward ? forward_of(k).second : backward_of(k).second; }
  bool first_virtual_stage(int chunk) const { return chunk == 0 && stage_ == 0; }
  bool last_virtual_stage(int chunk) const { return chunk == vpp_ - 1 && stage_ == pp_ - 1; }
  int next_stage() const { return (stage_ + 1) % pp_; }
  int prev_stage() const { return (stage_ + pp_ - 1) % pp_; }

  // Megatron's recv_tensor_from_previous_stage: whether iteration k receives (an activation
  // when forward, a gradient otherwise) and for which chunk. The leading stage (first in
  // forward, last in backward) is pp - 1 iterations ahead of the stage that feeds it around
  // the ring, and nothing arrives for the chunk that has no predecessor.
  std::pair<bool, int> receives_for(int k, bool forward) const {
    const bool leading = forward ? stage_ == 0 : stage_ == pp_ - 1;
    if (!leading) return {true, chunk_of(k + 1, forward)};
    bool recv = true;
    int chunk;
    if (k < pp_ - 1) {
      recv = false;
      chunk = chunk_of(k + 1, forward);
    } else {
      chunk = chunk_of(k - (pp_ - 1), forward);
    }
    if (chunk == (forward ? vpp_ - 1 : 0)) recv = false;
    return {recv, forward ? chunk + 1 : chunk - 1};
  }

  std::optional<P2PTransfer> send_forward(int k) const {
    auto [mb, chunk] = forward_of(k);
    if (last_virtual_stage(chunk)) return std::nullopt;
    return P2PTransfer{Type::SendForward, next_stage(), mb, chunk};
  }
  std::optional<P2PTransfer> send_backward(int k) const {
    auto [mb, chunk] = backward_of(k);
    if (first_virtual_stage(chunk)) return std::nullopt;
    return P2PTransfer{Type::SendBackward, prev_stage(), mb, chunk};
  }
  // Received tensors queue up per chunk in micro-batch order (Megatron's input_tensors and
  // output_tensor_grads lists), so the n-th receive for a chunk carries micro-batch n.
  std::optional<P2PTransfer> recv_forward(int chunk) {
    return P2PTransfer{Type::RecvForward, prev_stage(), forward_received_[chunk]++, chunk};
  }
  std::optional<P2PTransfer> recv_backward(int chunk) {
    return P2PTransfer{Type::RecvBackward, next_stage(), backward_received_[chunk]++, chunk};
  }

  int pp_, vpp_, stage_, total_;
  std::vector<std::pair<int, int>> table_;
  std::vector<int> forward_received_, backward_received_;
  Actions actions_;
};

std::string_view direction(Type type) {
  return type == Type::SendForward || type == Type::RecvForward ? "forward" : "backward";
}

}  // namespace

std::string_view schedule_kind_name(PipelineScheduleKind kind) {
  switch (kind) {
    case PipelineScheduleKind::GPipe:
      return "gpipe";
    case PipelineScheduleKind::OneFOneB:
      return "1f1b";
    case PipelineScheduleKind::Interleaved1F1B:
      return "interleaved_1f1b";
  }
  return "?";
}

PipelineScheduleKind schedule_kind_from_name(std::string_view name) {
  for (auto kind :
       {PipelineScheduleKind::GPipe, PipelineScheduleKind::OneFOneB, PipelineScheduleKind::Interleaved1F1B}) {
    if (schedule_kind_name(kind) == name) return kind;
  }
  TS_CHECK(false, "unknown pipeline schedule '", name, "'; choose gpipe, 1f1b or interleaved_1f1b");
  return {};
}

int num_microbatches(int64_t global_batch_size, int64_t micro_batch_size, int dp) {
  TS_CHECK(global_batch_size >= 1 && micro_batch_size >= 1 && dp >= 1, "global_batch_size (", global_batch_size,
           "), micro_batch_size (", micro_batch_size, ") and data-parallel size (", dp, ") must be >= 1");
  TS_CHECK(global_batch_size % (micro_batch_size * dp) == 0, "global_batch_size ", global_batch_size,
           " is not divisible by micro_batch_size ", micro_batch_size, " x data-parallel size ", dp);
  return static_cast<int>(global_batch_size / (micro_batch_size * dp));
}

void validate_schedule_options(const PipelineScheduleOptions& o) {
  const std::string_view name = schedule_kind_name(o.kind);
  TS_CHECK(o.pp >= 1, "pipeline_model_parallel_size must be >= 1, got ", o.pp);
  TS_CHECK(o.num_microbatches >= 1, "the number of micro-batches must be >= 1, got ", o.num_microbatches);
  if (o.kind != PipelineScheduleKind::Interleaved1F1B) {
    TS_CHECK(o.vpp == 1, "virtual_pipeline_model_parallel_size ", o.vpp, " needs the interleaved_1f1b schedule (", name,
             " runs one model chunk per stage)");
    return;
  }
  TS_CHECK(o.pp >= 2, "interleaved_1f1b needs pipeline_model_parallel_size >= 2, got ", o.pp);
  TS_CHECK(o.vpp >= 2, "interleaved_1f1b needs virtual_pipeline_model_parallel_size >= 2, got ", o.vpp,
           "; use 1f1b for one chunk per stage");
  TS_CHECK(o.num_microbatches >= o.pp, "interleaved_1f1b needs at least pipeline_model_parallel_size ", o.pp,
           " micro-batches (global_batch_size / (micro_batch_size x dp)), got ", o.num_microbatches);
  TS_CHECK(o.num_microbatches % o.pp == 0, "interleaved_1f1b needs the number of micro-batches ",
           "(global_batch_size / (micro_batch_size x dp) = ", o.num_microbatches,
           ") to be a multiple of pipeline_model_parallel_size ", o.pp, " (Megatron's rule)");
}

std::string_view transfer_type_name(P2PTransfer::Type type) {
  switch (type) {
    case Type::SendForward:
      return "send_forward";
    case Type::RecvForward:
      return "recv_forward";
    case Type::SendBackward:
      return "send_backward";
    case Type::RecvBackward:
      return "recv_backward";
  }
  return "?";
}

std::string compute_label(bool forward, int micro_batch, int chunk) {
  // Appends only: GCC 12 reports a bogus -Wrestrict for `const char* + std::string` at -O3.
  std::string label(1, forward ? 'F' : 'B');
  label += std::to_string(micro_batch);
  label += '.';
  label += std::to_string(chunk);
  return label;
}

std::string describe(const P2PTransfer& t) {
  std::string text(transfer_type_name(t.type));
  text += ' ';
  text += compute_label(t.is_forward(), t.micro_batch, t.chunk);
  text += t.is_send() ? " -> " : " <- ";
  text += std::to_string(t.peer);
  return text;
}

std::string PipelineAction::name() const {
  if (kind != Kind::Communicate) return compute_label(kind == Kind::Forward, micro_batch, chunk);
  std::string name;
  for (bool sends : {true, false}) {
    std::string part;
    for (Type type : sends ? std::vector{Type::SendForward, Type::SendBackward}
                           : std::vector{Type::RecvForward, Type::RecvBackward}) {
      bool present =
          std::any_of(transfers.begin(), transfers.end(), [&](const P2PTransfer& t) { return t.type == type; });
      if (present) {
        part += '_';
        part += direction(type);
      }
    }
    if (part.empty()) continue;
    if (!name.empty()) name += '_';
    name += sends ? "send" : "recv";
    name += part;
  }
  return name;
}

int num_1f1b_warmup_microbatches(int pp, int stage, int num_microbatches) {
  return std::min(pp - stage - 1, num_microbatches);
}

void append_1f1b_warmup(Actions& actions, int pp, int stage, int m) {
  LinearPeers peers{pp, stage};
  for (int i = 0; i < num_1f1b_warmup_microbatches(pp, stage, m); ++i) {
    communicate(actions, {peers.recv_forward(i)});
    actions.push_back(PipelineAction::forward(i, 0));
    communicate(actions, {peers.send_forward(i)});
  }
}

void append_1f1b_steady(Actions& actions, int pp, int stage, int m) {
  LinearPeers peers{pp, stage};
  const int warmup = num_1f1b_warmup_microbatches(pp, stage, m);
  const int remaining = m - warmup;
  if (remaining > 0) communicate(actions, {peers.recv_forward(warmup)});
  for (int i = 0; i < remaining; ++i) {
    actions.push_back(PipelineAction::forward(warmup + i, 0));
    communicate(actions, {peers.send_forward(warmup + i), peers.recv_backward(i)});
    actions.push_back(PipelineAction::backward(i, 0));
    if (i == remaining - 1) {
      communicate(actions, {peers.send_backward(i)});
    } else {
      communicate(actions, {peers.send_backward(i), peers.recv_forward(warmup + i + 1)});
    }
  }
}

void append_1f1b_cooldown(Actions& actions, int pp, int stage, int m) {
  LinearPeers peers{pp, stage};
  const int warmup = num_1f1b_warmup_microbatches(pp, stage, m);
  for (int i = m - warmup; i < m; ++i) {
    communicate(actions, {peers.recv_backward(i)});
    actions.push_back(PipelineAction::backward(i, 0));
    communicate(actions, {peers.send_backward(i)});
  }
}

std::vector<std::pair<int, int>> interleaved_schedule_table(int m, int vpp, int group_size) {
  TS_CHECK(m >= 1 && vpp >= 1 && group_size >= 1, "interleaved_schedule_table: m (", m, "), vpp (", vpp,
           ") and group size (", group_size, ") must be >= 1");
  std::vector<std::pair<int, int>> table;
  for (int first = 0; first < m; first += group_size) {
    int end = first + group_size >= m ? m : first + group_size;  // the last group takes the rest
    for (int chunk = 0; chunk < vpp; ++chunk) {
      for (int mb = first; mb < end; ++mb) table.emplace_back(mb, chunk);
    }
  }
  return table;
}

int num_interleaved_warmup_microbatches(int pp, int vpp, int stage, int m) {
  // (vpp-1) groups of pp run on every stage first, then 2 more per stage of distance to the end.
  return std::min((pp - stage - 1) * 2 + (vpp - 1) * pp, m * vpp);
}

PipelineSchedule build_pipeline_schedule(const PipelineScheduleOptions& o) {
  validate_schedule_options(o);
  PipelineSchedule schedule{o, {}};
  for (int stage = 0; stage < o.pp; ++stage) {
    Actions actions;
    switch (o.kind) {
      case PipelineScheduleKind::GPipe:
        actions = gpipe_stage(o.pp, stage, o.num_microbatches);
        break;
      case PipelineScheduleKind::OneFOneB:
        append_1f1b_warmup(actions, o.pp, stage, o.num_microbatches);
        append_1f1b_steady(actions, o.pp, stage, o.num_microbatches);
        append_1f1b_cooldown(actions, o.pp, stage, o.num_microbatches);
        break;
      case PipelineScheduleKind::Interleaved1F1B:
        actions = InterleavedBuilder(o.pp, o.vpp, stage, o.num_microbatches).build();
        break;
    }
    schedule.stages.push_back(std::move(actions));
  }
  return schedule;
}

double analytic_bubble_fraction(const PipelineScheduleOptions& o) {
  validate_schedule_options(o);
  double p = o.pp;
  double work = double(o.num_microbatches) * (o.kind == PipelineScheduleKind::Interleaved1F1B ? o.vpp : 1);
  return (p - 1) / (work + p - 1);
}

}  // namespace tessera
