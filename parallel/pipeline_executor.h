// PipelineExecutor: runs one training step's pipeline schedule (pipeline_schedule.h) on this
// rank, over the pipeline-parallel communicator, with a model-agnostic stage
// (pipeline_stage.h). Every rank of the pp group runs its own stage's action list:
//   - Forward(mb, c): the input activation received from the previous virtual stage (a leaf
//     that requires grad; nothing on virtual stage 0) goes through model.forward(c, mb, input);
//     the stage keeps (input, output) until the backward. On the last virtual stage the output
//     is the micro-batch's loss, whose value is kept in the step's result.
//   - Backward(mb, c): output.backward(received output gradient), or on the last virtual stage
//     loss.backward(loss_grad_scale); input.grad() is kept for its send, the rest is freed.
//     Parameter gradients accumulate over the micro-batches (repeated backward into .grad).
//   - Communicate: the action's transfers as one Communicator::batch_send_recv, waited for
//     before the next action. Activations travel with tag kActivationTag, gradients with
//     kGradientTag, so the two streams between a pair of ranks never mix (the schedule matches
//     transfers per (sender, receiver, direction)). Receives get fresh buffers of the model's
//     input_shape / output_shape.
// Each action is recorded with steady_clock times in a TimelineRecorder. With
// collect_timelines, the step starts with a barrier over the pp group (the shared time origin)
// and ends by gathering every stage's times, so each rank gets all stages' timelines, their
// statistics (bubble fraction, peak live activations) and, on pp rank 0, the Chrome trace at
// trace_path.
//
// Every rank of the pp group must call run_step() for the same step (it is collective over the
// pp group through its transfers). An error in one stage (a shape mismatch, a model failure)
// throws there; its peers then wait in their transfers until the watchdog reports the hang.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/pipeline_schedule.h"
#include "parallel/pipeline_stage.h"
#include "parallel/pipeline_timeline.h"

namespace tessera {

struct PipelineExecutorOptions {
  // Gradient fed to each micro-batch's loss: 1 / num_microbatches (the default, <= 0) makes the
  // accumulated gradient that of the mean loss over the step's micro-batches, as Megatron does.
  double loss_grad_scale = 0;
  // Share a time origin and gather every stage's timeline at the end of the step (one barrier
  // and one all_gather over the pp group per step).
  bool collect_timelines = false;
  // If set, pp rank 0 writes the step's Chrome trace here (implies collect_timelines).
  std::filesystem::path trace_path;
};

struct PipelineStepResult {
  // The last stage (pp rank pp-1): every micro-batch's loss, in micro-batch order; empty elsewhere.
  std::vector<double> losses;
  StageTimeline timeline;  // this stage's actions, seconds since the step's start
  // The most (micro-batch, chunk) activations this stage kept at once for a backward.
  int peak_live_activations = 0;
  // collect_timelines: every stage's timeline (index = stage) and their statistics.
  std::vector<StageTimeline> timelines;
  TimelineStats stats;
};

class PipelineExecutor {
 public:
  static constexpr int kActivationTag = 0;
  static constexpr int kGradientTag = 1;

  // Builds the schedule; checks that the pp group, the schedule's pp and the model's chunks
  // agree. `pp` and `model` must outlive the executor.
  PipelineExecutor(Communicator& pp, PipelineStageModel& model, const PipelineScheduleOptions& schedule,
                   PipelineExecutorOptions options = {});

  // Runs this stage's actions of one step (see the header comment).
  PipelineStepResult run_step();

  const PipelineSchedule& schedule() const { return schedule_; }
  const std::vector<PipelineAction>& actions() const { return schedule_.stages[stage_]; }

 private:
  using Key = std::pair<int, int>;  // (micro_batch, chunk)

  // What one stage holds during a step.
  struct StepState {
    std::map<Key, Tensor> inputs;        // received (or undefined on virtual stage 0), until backward
    std::map<Key, Tensor> outputs;       // forward outputs (the loss on the last virtual stage)
    std::map<Key, Tensor> output_grads;  // received, until backward
    std::map<Key, Tensor> input_grads;   // computed by backward, until sent
    std::vector<double> losses;
    int peak_live = 0;
  };

  void forward(StepState& state, int micro_batch, int chunk);
  void backward(StepState& state, int micro_batch, int chunk);
  void communicate(StepState& state, const std::vector<P2PTransfer>& transfers);
  // Every stage's timeline, from this stage's and the others' times (collective over pp).
  std::vector<StageTimeline> gather_timelines(const StageTimeline& mine);

  bool is_first_virtual_stage(int chunk) const { return stage_ == 0 && chunk == 0; }
  bool is_last_virtual_stage(int chunk) const { return stage_ == pp_size_ - 1 && chunk == schedule_.options.vpp - 1; }
  // "pipeline stage 1 of 4, F3.1"
  std::string where(const PipelineAction& action) const;

  Communicator& pp_;
  PipelineStageModel& model_;
  PipelineExecutorOptions options_;
  PipelineSchedule schedule_;
  int stage_ = 0;
  int pp_size_ = 1;
};

}  // namespace tessera
