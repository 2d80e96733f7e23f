// Pipeline schedules as data: for every pipeline stage (rank of the pp group), the ordered list
// of what it does in one training step, for num_microbatches micro-batches:
//   Forward(micro_batch, chunk), Backward(micro_batch, chunk) and Communicate: a batch of
//   point-to-point transfers posted together and waited for together (one batch_isend_irecv,
//   one NCCL group), named the way Megatron names its p2p functions, after what it transfers:
//   "send_<directions>_recv_<directions>" ("recv_forward", "send_forward_recv_backward",
//   "send_forward_backward_recv_forward_backward", ...).
// Each transfer names its peer stage and the tensor it carries: the activation that
// Forward(micro_batch, chunk) produced (sends) or consumes (receives), or the gradient that
// Backward(micro_batch, chunk) produced or consumes. Transfers between two stages are matched in
// posting order per (sender, receiver, forward|backward), the way a backend with one tag per
// direction matches them; the executor must keep activations and gradients apart that way.
//
// The schedules reproduce Megatron-core's (megatron/core/pipeline_parallel/schedules.py):
//   - GPipe: every forward, then every backward (micro-batch order); keeps all m alive.
//   - 1F1B, forward_backward_pipelining_without_interleaving: stage s runs min(pp-s-1, m)
//     warmup forwards, then alternates one forward and one backward, then cools down with the
//     remaining backwards; at most pp - s micro-batches alive.
//   - Interleaved 1F1B, forward_backward_pipelining_with_interleaving: each stage holds vpp
//     model chunks; micro-batches run in groups of pp through chunk 0, then chunk 1, ... (the
//     schedule table with microbatch_group_size_per_vp_stage = pp, Megatron's default); warmup
//     (pp-s-1)*2 + (vpp-1)*pp virtual micro-batches. Needs num_microbatches % pp == 0 and >= pp.
// Virtual stage k = chunk * pp + stage; activations flow k -> k+1 (stage pp-1 chunk c sends to
// stage 0 chunk c+1), gradients k -> k-1.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tessera {

enum class PipelineScheduleKind { GPipe, OneFOneB, Interleaved1F1B };

std::string_view schedule_kind_name(PipelineScheduleKind kind);       // "gpipe", "1f1b", "interleaved_1f1b"
PipelineScheduleKind schedule_kind_from_name(std::string_view name);  // throws naming the choices

struct PipelineScheduleOptions {
  PipelineScheduleKind kind = PipelineScheduleKind::OneFOneB;
  int pp = 1;   // pipeline_model_parallel_size
  int vpp = 1;  // virtual_pipeline_model_parallel_size: 1 for GPipe/1F1B, >= 2 for interleaved
  int num_microbatches = 1;
};

// global_batch_size / (micro_batch_size x dp); throws naming the options when it does not divide.
int num_microbatches(int64_t global_batch_size, int64_t micro_batch_size, int dp);

// Throws a one-line reason when the schedule cannot run these options.
void validate_schedule_options(const PipelineScheduleOptions& options);

struct P2PTransfer {
  // Megatron's directions: forward = activations (send to the next stage, receive from the
  // previous one), backward = gradients (send to the previous stage, receive from the next one).
  enum class Type { SendForward, RecvForward, SendBackward, RecvBackward };
  Type type = Type::SendForward;
  int peer = 0;         // the other stage
  int micro_batch = 0;  // the tensor: produced (send) or consumed (recv) by this stage's
  int chunk = 0;        // Forward/Backward(micro_batch, chunk)

  bool is_send() const { return type == Type::SendForward || type == Type::SendBackward; }
  bool is_forward() const { return type == Type::SendForward || type == Type::RecvForward; }
  bool operator==(const P2PTransfer&) const = default;
};

std::string_view transfer_type_name(P2PTransfer::Type type);  // "send_forward", ...
// "F3.1" (forward) / "B3.1" (backward) of micro-batch 3, chunk 1.
std::string compute_label(bool forward, int micro_batch, int chunk);
// "send_forward F3.1 -> 2", "recv_backward B3.1 <- 2"
std::string describe(const P2PTransfer& transfer);

struct PipelineAction {
  enum class Kind { Forward, Backward, Communicate };
  Kind kind = Kind::Forward;
  int micro_batch = 0;  // Forward / Backward
  int chunk = 0;
  std::vector<P2PTransfer> transfers;  // Communicate: never empty

  static PipelineAction forward(int micro_batch, int chunk) { return {Kind::Forward, micro_batch, chunk, {}}; }
  static PipelineAction backward(int micro_batch, int chunk) { return {Kind::Backward, micro_batch, chunk, {}}; }
  static PipelineAction communicate(std::vector<P2PTransfer> transfers) {
    return {Kind::Communicate, 0, 0, std::move(transfers)};
  }
  bool is_compute() const { return kind != Kind::Communicate; }
  // "F3.1" / "B3.1" (micro-batch 3, chunk 1); Communicate: the Megatron p2p function name, sends
  // first then receives, forward before backward ("send_forward_recv_backward").
  std::string name() const;
  bool operator==(const PipelineAction&) const = default;
};

struct PipelineSchedule {
  PipelineScheduleOptions options;
  std::vector<std::vector<PipelineAction>> stages;  // [stage] -> actions in execution order
};

// The schedule of every stage; validates the options first.
PipelineSchedule build_pipeline_schedule(const PipelineScheduleOptions& options);

// The phases of 1F1B on one stage, as Megatron names them (appended to `actions`).
// Warmup: min(pp - stage - 1, m) times recv_forward, F, send_forward.
void append_1f1b_warmup(std::vector<PipelineAction>& actions, int pp, int stage, int num_microbatches);
// Steady: recv_forward for the first steady micro-batch, then m - warmup times
// F, send_forward_recv_backward, B, send_backward_recv_forward (send_backward on the last one).
void append_1f1b_steady(std::vector<PipelineAction>& actions, int pp, int stage, int num_microbatches);
// Cooldown: the warmup's backwards: recv_backward, B, send_backward.
void append_1f1b_cooldown(std::vector<PipelineAction>& actions, int pp, int stage, int num_microbatches);
int num_1f1b_warmup_microbatches(int pp, int stage, int num_microbatches);

// Megatron-core's get_schedule_table: virtual micro-batch id -> (micro_batch, chunk) of the
// forward; the backward of virtual id k is (micro_batch, vpp - 1 - chunk).
std::vector<std::pair<int, int>> interleaved_schedule_table(int num_microbatches, int vpp, int group_size);
// Warmup virtual micro-batches of interleaved 1F1B on `stage` (capped at m x vpp).
int num_interleaved_warmup_microbatches(int pp, int vpp, int stage, int num_microbatches);

// The bubble as a fraction of the step time with equal-cost stages and free communication:
// (pp-1)/(m+pp-1) for GPipe and 1F1B, (pp-1)/(vpp*m+pp-1) for interleaved 1F1B. (Narayanan et
// al. 2021 state the interleaved bubble relative to the ideal time, (pp-1)/(vpp*m); as a
// fraction of the whole step that is the expression here.)
double analytic_bubble_fraction(const PipelineScheduleOptions& options);

}  // namespace tessera
