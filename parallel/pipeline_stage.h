// PipelineStageModel: what the pipeline executor (pipeline_executor.h) needs from the model
// side of one pipeline stage (one rank of the pp group). The model side implements it (GptModel
// stages, the test MLPs); the executor knows nothing of layers, data or losses.
//
// A stage holds vpp model chunks (1 for GPipe/1F1B); chunk c of stage s is virtual stage
// k = c * pp + s (pipeline_layout.h). Virtual stage 0 (stage 0, chunk 0) starts the model: it
// reads micro-batch `micro_batch` of the step itself (embedding). The last virtual stage
// (stage pp-1, chunk vpp-1) ends it: it returns the micro-batch's loss. Every other virtual
// stage maps the activation it receives from virtual stage k-1 to the one it sends to k+1.
//
// Contract of forward(chunk, micro_batch, input):
//   - `input` is undefined on virtual stage 0; elsewhere it is a leaf that requires grad, of
//     input_shape(chunk), activation_dtype(), on device() (received from the previous virtual
//     stage). The executor keeps it and reads input.grad() after the backward.
//   - returns the output activation, of output_shape(chunk), or on the last virtual stage a
//     one-element loss (the micro-batch's loss, not divided by the number of micro-batches: the
//     executor scales the backward). The output must depend differentiably on `input` and on
//     the chunk's parameters; the executor calls output.backward(...) once, so the graph need
//     not be retained.
//   - called with grad mode on, once per (micro_batch, chunk) and step, in schedule order (micro-
//     batches of one chunk in ascending order; chunks interleaved with interleaved 1F1B).
// Gradients accumulate into the parameters' .grad over the step's micro-batches (repeated
// backward); zeroing them between steps is the caller's job, as without pipelining.
// Shapes must not depend on the micro-batch: receives are posted before the data is known.
#pragma once

#include "core/device.h"
#include "core/dtype.h"
#include "core/shape.h"
#include "core/tensor.h"

namespace tessera {

class PipelineStageModel {
 public:
  virtual ~PipelineStageModel() = default;

  // Model chunks on this stage: the schedule's vpp.
  virtual int num_chunks() const = 0;

  // Runs `chunk` on micro-batch `micro_batch` (see the header comment).
  virtual Tensor forward(int chunk, int64_t micro_batch, const Tensor& input) = 0;

  // The activation `chunk` receives from the previous virtual stage (unused on virtual stage 0)
  // and the one it sends to the next (unused on the last): e.g. [B, T, C] hidden states, with
  // sequence parallelism this rank's sequence shard.
  virtual Shape input_shape(int chunk) const = 0;
  virtual Shape output_shape(int chunk) const = 0;

  // dtype and device of every activation and activation gradient sent between stages.
  virtual DType activation_dtype() const = 0;
  virtual Device device() const = 0;
};

}  // namespace tessera
