// train.cuda_graph: a micro-batch's forward and backward (its summed loss, scaled by 1 / the
// global batch's tokens, back into the gradients) replayed from a CUDA graph (core/device_graph.h).
// The first micro-batch runs eagerly: kernels choose their algorithms and the gradients get their
// buffers, so later backward passes accumulate in place at fixed addresses. The second is
// captured into the graph (which records, not runs) and replayed; every later one copies its
// tokens and labels into the captured input tensors and replays. Gradients must be zeroed in place
// between steps (TrainingRun::zero_gradients), never dropped: the graph adds into the buffers it saw.
#pragma once

#include <memory>

#include "core/device_graph.h"
#include "data/loader.h"
#include "models/gpt_model.h"

namespace tessera::training {

class MicroBatchGraph {
 public:
  // `loss_scale` multiplies the loss sum before backward (fixed for the run: the graph holds it).
  MicroBatchGraph(const GptModel& model, Device device, double loss_scale);

  // One micro-batch's forward and backward; returns its loss summed over tokens (this waits for
  // the GPU).
  double run(const MicroBatch& mb);

  bool captured() const { return graph_ != nullptr; }
  // Bytes the replays use for activations (the graph's private memory pool).
  size_t pool_bytes() const { return graph_ ? graph_->pool_bytes() : 0; }

 private:
  // The loss of `batch` and its backward, queued on the device; returns the loss tensor.
  Tensor forward_backward(const LmBatch& batch) const;

  const GptModel& model_;
  Device device_;
  double loss_scale_;
  int64_t calls_ = 0;
  LmBatch inputs_;  // the captured graph's inputs
  Tensor loss_;     // the captured graph's output
  std::unique_ptr<DeviceGraph> graph_;
};

}  // namespace tessera::training
