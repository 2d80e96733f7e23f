// GptPipelineStage: one pipeline rank's share of a GptModel, as the pipeline executor's stage
// (PipelineStageModel, parallel/pipeline_stage.h). It builds a GptModel piece for each of the
// rank's vpp model chunks (chunk c is virtual stage c * pp + stage of the layout; see
// ModelParallelism::pipeline), reads the step's micro-batches where the model needs data
// (tokens on the first virtual stage, labels and loss mask on the last) and passes hidden
// states [micro_batch_size, seq_length, C] between chunks ([.., seq_length / tp, C], this rank's
// sequence shard, with sequence parallelism).
//
// Per step: set_micro_batches(...) on every rank holding the first or the last virtual stage
// (others may too: they read only packed rows' LmBatch::document_lengths, which every stage's
// attention needs, so with packing set them on every rank), zero the gradients, run the schedule (forward(chunk,
// micro_batch, input) from the executor), then finalize_grads() before the optimizer step.
// The loss of a micro-batch is its `reduction` over its tokens (Mean by default; with Sum, set
// the executor's loss_grad_scale to 1 / the step's token count for the step's mean).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/gpt_model.h"
#include "parallel/pipeline_stage.h"

namespace tessera {

struct GptPipelineStageOptions {
  int64_t micro_batch_size = 1;
  int64_t seq_length = 0;  // tokens per row of every micro-batch
  LossReduction reduction = LossReduction::Mean;
};

class GptPipelineStage : public PipelineStageModel {
 public:
  // Builds pp rank `stage`'s chunks of `layout`; `parallel` gives tp and sequence parallelism
  // (its pipeline fields are set here). Every chunk draws its parameters from `seed` as the
  // whole model would.
  GptPipelineStage(const TransformerConfig& config, uint64_t seed, const PipelineLayout& layout, int stage,
                   GptPipelineStageOptions stage_options, ParamOptions options = {}, ModelParallelism parallel = {});

  // The micro-batches of the coming step, each [micro_batch_size, seq_length].
  void set_micro_batches(std::vector<LmBatch> micro_batches);

  const GptModel& chunk(int c) const;
  GptModel& chunk(int c);
  // Every chunk's parameters, chunk after chunk (names are global and unique over the chunks).
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  // After the step's last backward: each chunk's finalize_tensor_parallel_grads, then, with
  // tied embeddings, finalize_pipeline_grads over `embedding_group` (this tp rank's first and
  // last pp rank; may be null on ranks that hold neither).
  void finalize_grads(Communicator* embedding_group) const;

  // PipelineStageModel
  int num_chunks() const override { return static_cast<int>(chunks_.size()); }
  Tensor forward(int chunk, int64_t micro_batch, const Tensor& input) override;
  Shape input_shape(int /*chunk*/) const override { return activation_shape(); }
  Shape output_shape(int /*chunk*/) const override { return activation_shape(); }
  DType activation_dtype() const override { return options_.dtype; }
  Device device() const override { return options_.device; }

 private:
  Shape activation_shape() const;
  const LmBatch& micro_batch(int64_t index) const;

  GptPipelineStageOptions stage_options_;
  ParamOptions options_;
  std::vector<std::unique_ptr<GptModel>> chunks_;
  std::vector<LmBatch> micro_batches_;
};

}  // namespace tessera
