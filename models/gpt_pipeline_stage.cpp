#include "models/gpt_pipeline_stage.h"

#include "core/check.h"
#include "parallel/communicator.h"

namespace tessera {

GptPipelineStage::GptPipelineStage(const TransformerConfig& config, uint64_t seed, const PipelineLayout& layout,
                                   int stage, GptPipelineStageOptions stage_options, ParamOptions options,
                                   ModelParallelism parallel)
    : stage_options_(stage_options), options_(options) {
  TS_CHECK(stage_options.micro_batch_size >= 1 && stage_options.seq_length >= 1,
           "GptPipelineStage: micro_batch_size and seq_length must be >= 1, got ", stage_options.micro_batch_size,
           " and ", stage_options.seq_length);
  TS_CHECK(stage >= 0 && stage < layout.pp(), "GptPipelineStage: stage ", stage,
           " is outside pipeline_model_parallel_size ", layout.pp(), "; pass this rank's pp rank");
  parallel.pipeline = layout;
  for (int c = 0; c < layout.vpp(); ++c) {
    parallel.pipeline_stage = {stage, c};
    chunks_.push_back(std::make_unique<GptModel>(config, seed, options, parallel));
  }
  const ModelParallelism& built = chunks_.front()->parallelism();
  TS_CHECK(!built.sequence_parallel || stage_options.seq_length % built.tp_size() == 0, "GptPipelineStage: seq_length ",
           stage_options.seq_length, " does not divide by tensor_model_parallel_size ", built.tp_size(),
           " (sequence_parallel splits the sequence); use a multiple of ", built.tp_size());
}

void GptPipelineStage::set_micro_batches(std::vector<LmBatch> micro_batches) {
  const Shape expected{stage_options_.micro_batch_size, stage_options_.seq_length};
  for (size_t i = 0; i < micro_batches.size(); ++i) {
    TS_CHECK(micro_batches[i].tokens.shape() == expected && micro_batches[i].labels.shape() == expected,
             "GptPipelineStage: micro-batch ", i, " has tokens ", micro_batches[i].tokens.shape(), " and labels ",
             micro_batches[i].labels.shape(), ", expected ", expected, " (micro_batch_size x seq_length)");
  }
  micro_batches_ = std::move(micro_batches);
}

const LmBatch& GptPipelineStage::micro_batch(int64_t index) const {
  TS_CHECK(index >= 0 && index < static_cast<int64_t>(micro_batches_.size()), "GptPipelineStage: micro-batch ", index,
           " requested but set_micro_batches gave ", micro_batches_.size(), "; set the step's micro-batches first");
  return micro_batches_[static_cast<size_t>(index)];
}

const GptModel& GptPipelineStage::chunk(int c) const {
  TS_CHECK(c >= 0 && c < num_chunks(), "GptPipelineStage: chunk ", c, " outside the stage's ", num_chunks(), " chunks");
  return *chunks_[static_cast<size_t>(c)];
}

GptModel& GptPipelineStage::chunk(int c) { return const_cast<GptModel&>(std::as_const(*this).chunk(c)); }

std::vector<Tensor> GptPipelineStage::parameters() const {
  std::vector<Tensor> all;
  for (const auto& model : chunks_)
    for (const Tensor& p : model->parameters()) all.push_back(p);
  return all;
}

std::vector<std::pair<std::string, Tensor>> GptPipelineStage::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> all;
  for (const auto& model : chunks_)
    for (auto& named : model->named_parameters()) all.push_back(std::move(named));
  return all;
}

void GptPipelineStage::finalize_grads(Communicator* embedding_group) const {
  for (const auto& model : chunks_) {
    model->finalize_tensor_parallel_grads();
    if (!model->config().tie_word_embeddings || model->has_embedding() == model->has_head()) continue;
    TS_CHECK(embedding_group != nullptr, "GptPipelineStage: chunk ", &model - chunks_.data(),
             " holds a copy of the tied word embeddings; pass the embedding group (first and last pp rank) to "
             "finalize_grads");
    model->finalize_pipeline_grads(*embedding_group);
  }
}

Tensor GptPipelineStage::forward(int c, int64_t index, const Tensor& input) {
  const GptModel& model = chunk(c);
  if (model.has_embedding()) {
    // Virtual stage 0 reads its micro-batch itself; the executor passes nothing.
    const LmBatch& batch = micro_batch(index);
    return model.has_head() ? model.stage_loss(batch.tokens, batch, stage_options_.reduction)
                            : model.forward_stage(batch.tokens, batch.document_lengths);
  }
  TS_CHECK(input.defined() && input.shape() == activation_shape(), "GptPipelineStage: chunk ", c,
           " expects the previous stage's hidden states ", activation_shape(), ", got ",
           input.defined() ? input.shape() : Shape{});
  if (model.has_head()) return model.stage_loss(input, micro_batch(index), stage_options_.reduction);
  // A middle chunk needs only packed rows' document lengths: none where no micro-batches were set.
  const bool has_batch = index >= 0 && index < static_cast<int64_t>(micro_batches_.size());
  return model.forward_stage(input, has_batch ? micro_batch(index).document_lengths : DocumentLengths{});
}

Shape GptPipelineStage::activation_shape() const {
  const ModelParallelism& parallel = chunks_.front()->parallelism();
  const int64_t shard = parallel.sequence_parallel ? parallel.tp_size() : 1;
  return {stage_options_.micro_batch_size, stage_options_.seq_length / shard, chunks_.front()->config().hidden_size};
}

}  // namespace tessera
