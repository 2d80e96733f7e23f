#include "launcher/micro_batch_graph.h"

#include "core/ops/ops.h"
#include "launcher/training_run.h"

namespace tessera::training {

MicroBatchGraph::MicroBatchGraph(const GptModel& model, Device device, double loss_scale)
    : model_(model), device_(device), loss_scale_(loss_scale) {}

Tensor MicroBatchGraph::forward_backward(const LmBatch& batch) const {
  Tensor loss = model_.loss(batch, LossReduction::Sum);
  scale(loss, loss_scale_).backward();
  return loss;
}

double MicroBatchGraph::run(const MicroBatch& mb) {
  if (calls_++ == 0) return forward_backward(to_device(mb, device_)).item();
  if (!graph_) {
    inputs_ = to_device(mb, device_);
    graph_ = capture_device_graph(device_, [this] { loss_ = forward_backward(inputs_); });
  } else {
    Shape shape{mb.rows, mb.sequence_length};
    TS_CHECK(inputs_.tokens.shape() == shape, "train.cuda_graph: a micro-batch of shape ", shape,
             " after the graph was captured for ", inputs_.tokens.shape(), " (graphs replay fixed shapes)");
    inputs_.tokens.copy_(Tensor::from_vector(mb.tokens, shape));
    inputs_.labels.copy_(Tensor::from_vector(mb.labels, shape));
  }
  graph_->replay();
  return loss_.item();
}

}  // namespace tessera::training
