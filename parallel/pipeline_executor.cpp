// Runs a stage's pipeline schedule on real ranks (see pipeline_executor.h).
#include "parallel/pipeline_executor.h"

#include <algorithm>
#include <limits>

#include "core/autograd/grad_mode.h"
#include "parallel/pipeline_trace.h"

namespace tessera {

namespace {

using Clock = TimelineRecorder::Clock;

// Removes and returns map[key]; undefined if absent.
template <typename Map, typename Key>
Tensor take(Map& map, const Key& key) {
  auto it = map.find(key);
  if (it == map.end()) return {};
  Tensor value = it->second;
  map.erase(it);
  return value;
}

}  // namespace

PipelineExecutor::PipelineExecutor(Communicator& pp, PipelineStageModel& model, const PipelineScheduleOptions& schedule,
                                   PipelineExecutorOptions options)
    : pp_(pp),
      model_(model),
      options_(std::move(options)),
      schedule_(build_pipeline_schedule(schedule)),
      stage_(pp.rank()),
      pp_size_(pp.size()) {
  TS_CHECK(schedule.pp == pp.size(), "pipeline executor: the schedule is for pipeline_model_parallel_size ",
           schedule.pp, " but the pipeline group '", pp.name(), "' has ", pp.size(),
           " ranks; build the schedule with the group's size");
  TS_CHECK(model.num_chunks() == schedule.vpp, "pipeline executor: stage ", stage_, " holds ", model.num_chunks(),
           " model chunks but the schedule has virtual_pipeline_model_parallel_size ", schedule.vpp,
           "; build the stage with one chunk per virtual stage");
  TS_CHECK(model.device() == pp.device(), "pipeline executor: stage ", stage_, "'s activations are on ",
           model.device().str(), " but the pipeline group '", pp.name(), "' communicates on ", pp.device().str(),
           "; use a communicator of the model's device");
  if (options_.loss_grad_scale <= 0) options_.loss_grad_scale = 1.0 / schedule.num_microbatches;
  if (!options_.trace_path.empty()) options_.collect_timelines = true;
}

std::string PipelineExecutor::where(const PipelineAction& action) const {
  return detail::concat("pipeline stage ", stage_, " of ", pp_size_, " (group '", pp_.name(), "'), ", action.name());
}

PipelineStepResult PipelineExecutor::run_step() {
  EnableGradGuard grad_mode;  // forwards record their graphs for the backwards
  if (options_.collect_timelines) pp_.barrier();
  TimelineRecorder recorder(stage_, Clock::now());
  StepState state;
  state.losses.assign(static_cast<size_t>(schedule_.options.num_microbatches),
                      std::numeric_limits<double>::quiet_NaN());
  for (const PipelineAction& action : actions()) {
    Clock::time_point begin = Clock::now();
    switch (action.kind) {
      case PipelineAction::Kind::Forward:
        forward(state, action.micro_batch, action.chunk);
        break;
      case PipelineAction::Kind::Backward:
        backward(state, action.micro_batch, action.chunk);
        break;
      case PipelineAction::Kind::Communicate:
        communicate(state, action.transfers);
        break;
    }
    recorder.record(begin, Clock::now(), action);
  }
  // Every schedule ends with all backwards run and all gradients sent.
  TS_CHECK(state.outputs.empty() && state.inputs.empty() && state.output_grads.empty() && state.input_grads.empty(),
           "pipeline stage ", stage_, ": the step ended with ", state.outputs.size(), " forward outputs, ",
           state.inputs.size(), " inputs, ", state.output_grads.size(), " output gradients and ",
           state.input_grads.size(), " input gradients still held; the schedule is incomplete");

  PipelineStepResult result;
  if (stage_ == pp_size_ - 1) result.losses = std::move(state.losses);
  result.timeline = recorder.timeline();
  result.peak_live_activations = state.peak_live;
  if (options_.collect_timelines) {
    result.timelines = gather_timelines(result.timeline);
    result.stats = timeline_stats(result.timelines);
    if (!options_.trace_path.empty() && stage_ == 0) write_chrome_trace(options_.trace_path, result.timelines);
  }
  return result;
}

void PipelineExecutor::forward(StepState& state, int micro_batch, int chunk) {
  const PipelineAction action = PipelineAction::forward(micro_batch, chunk);
  const Key key{micro_batch, chunk};
  Tensor input;
  if (!is_first_virtual_stage(chunk)) {
    auto it = state.inputs.find(key);
    TS_CHECK(it != state.inputs.end(), where(action), ": its input activation was never received");
    input = it->second;
  }
  Tensor output = model_.forward(chunk, micro_batch, input);
  TS_CHECK(output.defined(), where(action), ": the stage's forward returned no tensor");
  if (is_last_virtual_stage(chunk)) {
    TS_CHECK(output.numel() == 1, where(action),
             ": the last virtual stage must return the micro-batch's loss (one element), got shape ", output.shape());
    state.losses[static_cast<size_t>(micro_batch)] = output.item();
  } else {
    Shape expected = model_.output_shape(chunk);
    TS_CHECK(output.shape() == expected && output.dtype() == model_.activation_dtype(), where(action),
             ": the output activation is ", output.shape(), " ", dtype_name(output.dtype()), " but output_shape(",
             chunk, ") and activation_dtype() promise ", expected, " ", dtype_name(model_.activation_dtype()),
             "; the next stage receives that");
  }
  TS_CHECK(output.requires_grad(), where(action),
           ": the output does not require grad; a chunk's output must depend differentiably on its parameters");
  state.outputs[key] = output;
  state.peak_live = std::max(state.peak_live, static_cast<int>(state.outputs.size()));
}

void PipelineExecutor::backward(StepState& state, int micro_batch, int chunk) {
  const PipelineAction action = PipelineAction::backward(micro_batch, chunk);
  const Key key{micro_batch, chunk};
  Tensor output = take(state.outputs, key);
  TS_CHECK(output.defined(), where(action), ": it has no forward output to backpropagate");
  Tensor input = take(state.inputs, key);
  if (is_last_virtual_stage(chunk)) {
    output.backward(Tensor::full(output.shape(), options_.loss_grad_scale, output.dtype(), output.device()));
  } else {
    Tensor output_grad = take(state.output_grads, key);
    TS_CHECK(output_grad.defined(), where(action), ": its output gradient was never received");
    output.backward(output_grad);
  }
  if (is_first_virtual_stage(chunk)) return;  // nothing upstream
  TS_CHECK(input.grad().defined(), where(action),
           ": the input activation got no gradient; the chunk's output must depend on its input");
  state.input_grads[key] = input.grad().contiguous();
}

void PipelineExecutor::communicate(StepState& state, const std::vector<P2PTransfer>& transfers) {
  const PipelineAction action = PipelineAction::communicate(transfers);
  const DType dtype = model_.activation_dtype();
  const Device device = model_.device();
  std::vector<P2pOp> ops;
  std::vector<Tensor> received_inputs;
  std::vector<Key> sent_grads;
  for (const P2PTransfer& transfer : transfers) {
    const Key key{transfer.micro_batch, transfer.chunk};
    switch (transfer.type) {
      case P2PTransfer::Type::SendForward: {
        auto it = state.outputs.find(key);
        TS_CHECK(it != state.outputs.end(), where(action), ": ", describe(transfer), " before its forward ran");
        ops.push_back(P2pOp::send(it->second.detach().contiguous(), transfer.peer, kActivationTag));
        break;
      }
      case P2PTransfer::Type::RecvForward: {
        Tensor buffer = Tensor::empty(model_.input_shape(transfer.chunk), dtype, device);
        state.inputs[key] = buffer;
        received_inputs.push_back(buffer);
        ops.push_back(P2pOp::recv(buffer, transfer.peer, kActivationTag));
        break;
      }
      case P2PTransfer::Type::SendBackward: {
        auto it = state.input_grads.find(key);
        TS_CHECK(it != state.input_grads.end(), where(action), ": ", describe(transfer), " before its backward ran");
        ops.push_back(P2pOp::send(it->second, transfer.peer, kGradientTag));
        sent_grads.push_back(key);
        break;
      }
      case P2PTransfer::Type::RecvBackward: {
        Tensor buffer = Tensor::empty(model_.output_shape(transfer.chunk), dtype, device);
        state.output_grads[key] = buffer;
        ops.push_back(P2pOp::recv(buffer, transfer.peer, kGradientTag));
        break;
      }
    }
  }
  pp_.batch_send_recv(std::move(ops))->wait();
  for (Tensor& input : received_inputs) input.set_requires_grad(true);  // a leaf: its .grad goes upstream
  for (const Key& key : sent_grads) state.input_grads.erase(key);
}

std::vector<StageTimeline> PipelineExecutor::gather_timelines(const StageTimeline& mine) {
  // Every stage's action list is known here (the schedule); only the times travel: [begin, end]
  // per action, padded to the longest list.
  size_t longest = 0;
  for (const auto& actions : schedule_.stages) longest = std::max(longest, actions.size());
  const int64_t width = static_cast<int64_t>(2 * longest);
  std::vector<double> times(static_cast<size_t>(width), 0.0);
  for (size_t i = 0; i < mine.events.size(); ++i) {
    times[2 * i] = mine.events[i].begin;
    times[2 * i + 1] = mine.events[i].end;
  }
  Tensor all = Tensor::empty({width * pp_size_}, DType::F64, pp_.device());
  pp_.all_gather(Tensor::from_vector(times, {width}).to(pp_.device()), all);
  std::vector<double> gathered = all.to_vector<double>();
  std::vector<StageTimeline> timelines(static_cast<size_t>(pp_size_));
  for (int stage = 0; stage < pp_size_; ++stage) {
    timelines[stage].stage = stage;
    const auto& actions = schedule_.stages[stage];
    for (size_t i = 0; i < actions.size(); ++i) {
      size_t at = static_cast<size_t>(stage * width) + 2 * i;
      timelines[stage].events.push_back({gathered[at], gathered[at + 1], actions[i]});
    }
  }
  return timelines;
}

}  // namespace tessera
