#include "models/gpt_model.h"

#include <limits>

#include <algorithm>

#include <set>

#include "core/autograd/checkpoint.h"
#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "models/lora.h"
#include "parallel/communicator.h"
#include "parallel/tp_mappings.h"

namespace tessera {

namespace {

// Empty container modules give the Megatron-style name prefixes ("embedding.", "decoder.").
class Container : public Module {
 public:
  template <typename M>
  std::shared_ptr<M> add(const std::string& name, std::shared_ptr<M> child) {
    return register_module(name, std::move(child));
  }
};

// Megatron's divisibility rules for a tp split, one line each.
void check_parallelism(const TransformerConfig& config, const ModelParallelism& parallel) {
  TS_CHECK(parallel.tp != nullptr || !parallel.sequence_parallel,
           "GptModel: sequence_parallel needs a tensor-parallel group (ModelParallelism::tp); set it to false or pass "
           "the tp communicator");
  const int tp = parallel.tp_size();
  auto divisible = [&](int64_t value, const char* key) {
    TS_CHECK(value % tp == 0, "model.", key, " ", value, " is not divisible by tensor_model_parallel_size ", tp,
             " (model ", config.name, "); choose a tp size that divides it");
  };
  divisible(config.num_attention_heads, "num_attention_heads");
  divisible(config.num_query_groups, "num_query_groups");
  divisible(config.ffn_hidden_size, "ffn_hidden_size");
}

// A tp group of one rank splits nothing: build the single-rank model (exact, no communication);
// Megatron likewise turns sequence parallelism off at tp = 1. The pipeline placement stays.
ModelParallelism without_trivial_tp(const ModelParallelism& parallel) {
  if (parallel.tp_size() > 1) return parallel;
  ModelParallelism single = parallel;
  single.tp = nullptr;
  single.sequence_parallel = false;
  return single;
}

void check_pipeline(const TransformerConfig& config, const ModelParallelism& parallel) {
  if (!parallel.pipeline) return;
  const PipelineLayout& layout = *parallel.pipeline;
  const StageChunk piece = parallel.pipeline_stage;
  TS_CHECK(layout.num_layers() == config.num_layers, "GptModel: the pipeline layout places ", layout.num_layers(),
           " layers but model.num_layers is ", config.num_layers, " (model ", config.name,
           "); build the layout from the model's num_layers");
  TS_CHECK(piece.stage >= 0 && piece.stage < layout.pp() && piece.chunk >= 0 && piece.chunk < layout.vpp(),
           "GptModel: pipeline_stage (stage ", piece.stage, ", chunk ", piece.chunk,
           ") is outside the layout's pipeline_model_parallel_size ", layout.pp(),
           " x virtual_pipeline_model_parallel_size ", layout.vpp(),
           "; pass this rank's pp rank and a chunk below vpp");
}

}  // namespace

// The whole model draws its parameters from one generator, one draw per table or weight, in
// this order: word embeddings, position embeddings (learned only), the layers in order
// (TransformerLayer::kInitDraws each), the output layer (untied only). A piece moves the
// generator to the offset of each part it builds, so it draws the whole model's values; for
// the whole model every move is to where the generator already is.
GptModel::GptModel(const TransformerConfig& config, uint64_t seed, ParamOptions options, ModelParallelism parallel)
    : config_(config),
      parallel_(without_trivial_tp(parallel)),
      param_options_(options),
      rng_(seed ^ 0x9e3779b97f4a7c15ULL, parallel_.tp_rank()) {
  config_.validate();
  check_parallelism(config_, parallel);
  check_pipeline(config_, parallel);
  if (parallel_.pipeline) {
    const PipelineLayout& layout = *parallel_.pipeline;
    first_piece_ = parallel_.pipeline_stage == layout.embedding();
    last_piece_ = parallel_.pipeline_stage == layout.head();
    layer_indices_ = layout.layers(parallel_.pipeline_stage.stage, parallel_.pipeline_stage.chunk);
  } else {
    for (int64_t i = 0; i < config_.num_layers; ++i) layer_indices_.push_back(i);
  }
  const bool learned_positions = config_.position_embedding == PositionEmbedding::Learned;
  const uint64_t layers_offset = learned_positions ? 2 : 1;
  Generator init(seed);
  auto draw_from = [&](uint64_t offset) { init.set_state({seed, offset}); };

  const int64_t padded_vocab = config_.padded_vocab_size(parallel_.tp_size());
  if (first_piece_ || (last_piece_ && config_.tie_word_embeddings)) {
    auto embedding = register_module("embedding", std::make_shared<Container>());
    draw_from(0);
    word_embeddings_ = embedding->add(
        "word_embeddings", std::make_shared<VocabParallelEmbedding>(
                               padded_vocab, config_.hidden_size, parallel_.tp, init,
                               VocabParallelEmbeddingOptions{.sequence_parallel = parallel_.sequence_parallel,
                                                             .sequence_dim = kSequenceDim,
                                                             .init_std = config_.init_method_std,
                                                             .param = options}));
    if (first_piece_ && learned_positions) {
      position_embeddings_ = embedding->add(
          "position_embeddings", std::make_shared<Embedding>(config_.max_position_embeddings, config_.hidden_size, init,
                                                             config_.init_method_std, options));
      replicated_parameters_.push_back(position_embeddings_->weight());
    }
  }
  auto decoder = register_module("decoder", std::make_shared<Container>());
  auto layers = decoder->add("layers", std::make_shared<Container>());
  for (int64_t i : layer_indices_) {
    const uint64_t offset = layers_offset + uint64_t(i) * TransformerLayer::kInitDraws;
    draw_from(offset);
    auto layer = layers->add(std::to_string(i), std::make_shared<TransformerLayer>(config_, init, options, parallel_));
    TS_CHECK(init.state().offset == offset + TransformerLayer::kInitDraws, "GptModel: a TransformerLayer took ",
             init.state().offset - offset, " init draws but TransformerLayer::kInitDraws is ",
             TransformerLayer::kInitDraws, "; update it");
    layers_.push_back(layer);
    for (const Tensor& p : layer->replicated_parameters()) replicated_parameters_.push_back(p);
    // LoRA draws from its own stream (models/lora.h): the base weights stay the plain model's.
    if (config_.lora.enabled()) {
      for (const Tensor& p : attach_lora(*layer, i, config_.lora, seed, rng_, parallel_))
        replicated_parameters_.push_back(p);
    }
  }
  if (last_piece_) {
    if (parallel_.tp == nullptr && padded_vocab > config_.vocab_size) {
      // Logits come from the whole padded table (a GEMM over V = 50257 columns ran 5x slower than
      // over 50304 on an H100) with the padded columns pushed to -inf by the GEMM's bias epilogue:
      // they take no probability mass, and their rows no gradient.
      std::vector<float> mask(static_cast<size_t>(padded_vocab), 0.0f);
      std::fill(mask.begin() + config_.vocab_size, mask.end(), -std::numeric_limits<float>::infinity());
      padded_column_mask_ = Tensor::from_vector(mask, Shape{padded_vocab}).to(options.dtype).to(options.device);
    }
    final_norm_ = decoder->add("final_layernorm", std::make_shared<Norm>(config_, options));
    for (const Tensor& p : final_norm_->parameters()) replicated_parameters_.push_back(p);
    if (!config_.tie_word_embeddings) {
      draw_from(layers_offset + uint64_t(config_.num_layers) * TransformerLayer::kInitDraws);
      // Only its weight is used (see logits()), so its own sequence-parallel option stays off.
      ColumnParallelOptions head{.bias = false, .init_std = config_.init_method_std, .param = options};
      output_layer_ = register_module("output_layer", std::make_shared<ColumnParallelLinear>(
                                                          config_.hidden_size, padded_vocab, parallel_.tp, init, head));
    }
  }
  // With LoRA only the adapters train: the base gets no gradient, hence no optimizer state.
  if (config_.lora.enabled()) freeze_base_parameters(*this);
}

const RopeTables* GptModel::cached_rope_tables(int64_t seq_len, Device device) const {
  if (config_.position_embedding != PositionEmbedding::Rope) return nullptr;
  std::lock_guard<std::mutex> lock(rope_mutex_);
  auto key = std::make_pair(seq_len, device.str());
  auto it = rope_cache_.find(key);
  if (it == rope_cache_.end()) {
    DType dtype = param_options_.dtype;
    auto [cos, sin] =
        rope_tables(seq_len, config_.head_dim(), config_.rotary_base, config_.rope_scaling, dtype, device);
    it = rope_cache_.emplace(key, RopeTables{cos, sin}).first;
  }
  return &it->second;
}

Tensor GptModel::embed(const Tensor& tokens, const Tensor& positions) const {
  Tensor h = word_embeddings_->forward(tokens);
  return position_embeddings_ ? add(h, position_embeddings_->forward(positions)) : h;
}

int64_t GptModel::sequence_length(const Tensor& input) const {
  const int tp = parallel_.tp_size();
  int64_t t = 0;
  if (first_piece_) {
    TS_CHECK(input.dim() == 2, "GptModel: tokens must be [B, T], got ", input.shape());
    t = input.size(1);
  } else {
    TS_CHECK(input.dim() == 3 && input.size(2) == config_.hidden_size,
             "GptModel: a pipeline piece without the embedding takes the previous piece's hidden states [B, T",
             parallel_.sequence_parallel ? "/tp" : "", ", ", config_.hidden_size, "], got ", input.shape());
    t = input.size(1) * (parallel_.sequence_parallel ? tp : 1);
  }
  TS_CHECK(t <= config_.max_position_embeddings, "GptModel: sequence length ", t, " exceeds max_position_embeddings ",
           config_.max_position_embeddings);
  TS_CHECK(!parallel_.sequence_parallel || t % tp == 0, "GptModel: sequence length ", t,
           " does not divide by tensor_model_parallel_size ", tp,
           " (sequence_parallel splits the sequence); use a multiple of ", tp);
  return t;
}

const Tensor& GptModel::cached_positions(int64_t t, Device device) const {
  std::lock_guard<std::mutex> lock(rope_mutex_);
  auto key = std::make_pair(t, device.str());
  auto it = positions_cache_.find(key);
  if (it == positions_cache_.end()) it = positions_cache_.emplace(key, Tensor::arange(t, DType::I64, device)).first;
  return it->second;
}

Tensor GptModel::document_positions(const DocumentLengths& documents, Device device) {
  std::vector<int64_t> positions;
  for (const std::vector<int64_t>& row : documents)
    for (int64_t length : row)
      for (int64_t i = 0; i < length; ++i) positions.push_back(i);
  const int64_t b = static_cast<int64_t>(documents.size());
  return Tensor::from_vector(positions, {b, static_cast<int64_t>(positions.size()) / b}).to(device);
}

ResidualStream GptModel::run_layers(const Tensor& input, const DocumentLengths& documents) const {
  const int64_t t = sequence_length(input);
  const int tp = parallel_.tp_size();
  if (!documents.empty()) check_document_lengths(documents, input.size(0), t);
  // Rows of one document each take the ordinary path, untouched (no host work: the trainer
  // captures it in a CUDA graph). The layers' recomputation may outlive the caller's batch: own a copy.
  const bool packed = std::any_of(documents.begin(), documents.end(), [](const auto& row) { return row.size() > 1; });
  const std::shared_ptr<const DocumentLengths> packed_documents =
      packed ? std::make_shared<const DocumentLengths>(documents) : nullptr;
  Tensor h = input;
  if (first_piece_) {
    Tensor positions;
    if (position_embeddings_) {
      // With sequence parallelism the embedding output holds this rank's share of the positions.
      const int64_t shard = parallel_.sequence_parallel ? t / tp : t, start = parallel_.tp_rank() * shard;
      if (packed) {
        positions = document_positions(documents, input.device());
        if (parallel_.sequence_parallel) positions = positions.narrow(1, start, shard).contiguous();
      } else {
        positions = cached_positions(t, input.device());
        if (parallel_.sequence_parallel) positions = positions.narrow(0, start, shard);
      }
    }
    fsdp_pre_forward({0});
    h = fsdp_post_forward({0}, {embed(input, positions)})[0];
  }
  const RopeTables* rope = cached_rope_tables(t, input.device());
  Generator* dropout_rng = nullptr;
  if (config_.hidden_dropout > 0.0 && is_training())
    dropout_rng = parallel_.sequence_parallel ? &rng_.fork() : &rng_.default_generator();
  ResidualStream stream{h, Tensor()};
  for (size_t k = 0; k < layers_.size(); ++k) {
    const TransformerLayer& layer = *layers_[k];
    const size_t unit = k + 1;
    fsdp_pre_forward({unit});
    if (!recompute_) {
      stream = layer.forward(stream, rope, dropout_rng, {}, packed_documents.get());
    } else {
      std::vector<Generator*> generators;
      if (dropout_rng) generators.push_back(dropout_rng);
      // LoRA's adapter dropout draws from the default stream (and the model-parallel fork under
      // tp): the recomputation must replay those draws too.
      if (config_.lora.rank > 0 && config_.lora.dropout > 0.0 && is_training()) {
        for (Generator* g : {&rng_.default_generator(), parallel_.tp ? &rng_.fork() : nullptr})
          if (g && std::find(generators.begin(), generators.end(), g) == generators.end()) generators.push_back(g);
      }
      // Recomputation records only when an input requires grad; with a frozen base (LoRA) the
      // stream out of the embedding does not, yet the adapters inside the region need it.
      if (GradMode::is_enabled() && !stream.residual.requires_grad()) {
        stream.residual = stream.residual.detach();
        stream.residual.set_requires_grad(true);
      }
      auto region = [&layer, rope, dropout_rng, packed_documents](const std::vector<Tensor>& in) {
        ResidualStream out = layer.forward({in[0], in[1]}, rope, dropout_rng, {}, packed_documents.get());
        return std::vector<Tensor>{out.residual, out.pending};
      };
      std::vector<Tensor> out = checkpoint(region, {stream.residual, stream.pending}, generators);
      stream = {out[0], out[1]};
    }
    std::vector<Tensor> out = fsdp_post_forward({unit}, {stream.residual, stream.pending});
    stream = {out[0], out[1]};
  }
  return stream;
}

Tensor GptModel::final_norm(const ResidualStream& stream) const {
  return stream.pending.defined() ? final_norm_->add_forward(stream.pending, stream.residual).first
                                  : final_norm_->forward(stream.residual);
}

const Tensor& GptModel::output_table() const {
  return output_layer_ ? output_layer_->weight() : word_embeddings_->weight();
}

Tensor GptModel::logits(const Tensor& hidden) const {
  // The output layer's weight (or the tied embedding table) is used directly, so both share
  // this one path. Single rank: logits over the padded vocabulary, its padded columns -inf.
  const Tensor& table = output_table();
  if (parallel_.tp == nullptr) return linear(hidden, table, padded_column_mask_);
  // A column-parallel product: its input enters the tp region whole (conjugate: all-reduce of
  // its gradient), or all-gathered from the sequence shards. vocab_parallel_cross_entropy
  // masks the padded columns.
  Communicator& tp = *parallel_.tp;
  Tensor x = parallel_.sequence_parallel ? gather_from_sequence_parallel(hidden, tp, kSequenceDim)
                                         : copy_to_tensor_parallel(hidden, tp);
  return linear(x, table);
}

Tensor GptModel::full_logits(const Tensor& hidden) const {
  Tensor shard = logits(hidden);
  if (parallel_.tp == nullptr) {
    return padded_column_mask_.defined() ? shard.narrow(-1, 0, config_.vocab_size).contiguous() : shard;
  }
  return gather_from_tensor_parallel(shard, *parallel_.tp).narrow(-1, 0, config_.vocab_size);
}

Tensor GptModel::forward(const Tensor& tokens) const {
  TS_CHECK(first_piece_ && last_piece_,
           "GptModel: forward(tokens) runs the whole model, but this is a pipeline piece; "
           "use forward_stage / stage_loss");
  ResidualStream stream = run_layers(tokens, {});
  fsdp_pre_forward(head_units());
  return fsdp_post_forward(head_units(), {full_logits(final_norm(stream))})[0];
}

Tensor GptModel::forward_hidden(const Tensor& tokens) const {
  TS_CHECK(first_piece_ && last_piece_ && !parallel_.sequence_parallel && fsdp_ == nullptr,
           "GptModel: forward_hidden runs the whole model with its hidden states whole on every rank; build it "
           "without pipeline pieces, sequence parallelism and FSDP");
  return final_norm(run_layers(tokens, {}));
}

KvCache GptModel::new_kv_cache(int64_t batch, int64_t capacity) const {
  TS_CHECK(first_piece_ && last_piece_,
           "GptModel: KV-cache decoding runs the whole model, not a pipeline piece; "
           "build the inference model without ModelParallelism::pipeline");
  const Tensor& weight = word_embeddings_->weight();
  TransformerConfig local = config_;
  local.num_query_groups /= parallel_.tp_size();
  return KvCache(local, batch, capacity, weight.dtype(), weight.device());
}

Tensor GptModel::forward(const Tensor& tokens, KvCache& cache) const {
  TS_CHECK(!is_training(), "GptModel: decoding with a KV cache runs in eval mode; call eval() first");
  TS_CHECK(first_piece_ && last_piece_,
           "GptModel: KV-cache decoding runs the whole model, not a pipeline piece; "
           "build the inference model without ModelParallelism::pipeline");
  TS_CHECK(!parallel_.sequence_parallel,
           "GptModel: decoding with a KV cache does not support sequence_parallel "
           "(a step's tokens do not split over tp); build the inference model with sequence_parallel = false");
  TS_CHECK(tokens.dim() == 2 && tokens.size(0) == cache.batch(),
           "GptModel: tokens must be [B, T] with B = ", cache.batch(), " (the cache's rows), got ", tokens.shape());
  TS_CHECK(fsdp_ == nullptr,
           "GptModel: KV-cache decoding needs the full parameters, but FSDP shards them; call "
           "gather_full_parameters() and set_fsdp(nullptr) first");
  NoGradGuard no_grad;
  const int64_t b = tokens.size(0), t = tokens.size(1);
  std::vector<int64_t> positions;
  for (int64_t row = 0; row < b; ++row) {
    const int64_t start = cache.length(row);
    TS_CHECK(start + t <= config_.max_position_embeddings, "GptModel: row ", row, " would reach position ", start + t,
             ", beyond max_position_embeddings ", config_.max_position_embeddings,
             " (shorten the prompt or the number of new tokens)");
    for (int64_t i = 0; i < t; ++i) positions.push_back(start + i);
  }
  Tensor h =
      embed(tokens, position_embeddings_ ? Tensor::from_vector(positions, {b, t}).to(tokens.device()) : Tensor());
  const RopeTables* rope = cached_rope_tables(cache.capacity(), tokens.device());
  ResidualStream stream{h, Tensor()};
  for (size_t i = 0; i < layers_.size(); ++i)
    stream = layers_[i]->forward(stream, rope, nullptr, LayerCache{&cache, static_cast<int64_t>(i)});
  cache.advance(t);
  return full_logits(final_norm(stream));
}

Tensor GptModel::loss(const LmBatch& batch, LossReduction reduction) const {
  TS_CHECK(first_piece_ && last_piece_,
           "GptModel: loss(batch) runs the whole model, but this is a pipeline piece; "
           "use forward_stage / stage_loss");
  return stage_loss(batch.tokens, batch, reduction);
}

Tensor GptModel::forward_stage(const Tensor& input, const DocumentLengths& documents) const {
  TS_CHECK(!last_piece_,
           "GptModel: forward_stage runs a pipeline piece that is not the last; this piece holds the "
           "final norm and output layer, so call stage_loss");
  ResidualStream stream = run_layers(input, documents);
  // The next piece starts a fresh stream: pass one tensor, residual and pending summed.
  return stream.pending.defined() ? add(stream.pending, stream.residual) : stream.residual;
}

Tensor GptModel::stage_loss(const Tensor& input, const LmBatch& batch, LossReduction reduction) const {
  TS_CHECK(last_piece_,
           "GptModel: stage_loss runs the last pipeline piece (final norm, output layer, loss); this "
           "piece is not the last, so call forward_stage");
  CrossEntropyOptions options;
  options.loss_mask = batch.loss_mask;
  options.reduction = reduction;
  ResidualStream stream = run_layers(input, batch.document_lengths);
  fsdp_pre_forward(head_units());
  Tensor logits_or_shard = logits(final_norm(stream));
  Tensor loss = parallel_.tp == nullptr ? cross_entropy(logits_or_shard, batch.labels, options)
                                        : vocab_parallel_cross_entropy(logits_or_shard, batch.labels,
                                                                       config_.vocab_size, *parallel_.tp, options);
  return fsdp_post_forward(head_units(), {loss})[0];
}

void GptModel::finalize_pipeline_grads(Communicator& embedding_group) const {
  // Only pieces that are first or last of a split tied model hold one of two copies.
  if (!config_.tie_word_embeddings || first_piece_ == last_piece_) return;
  TS_CHECK(embedding_group.size() == 2,
           "GptModel: finalize_pipeline_grads needs the embedding group of the first and "
           "last pipeline stage (2 ranks), got group '",
           embedding_group.name(), "' of ", embedding_group.size(), " ranks");
  NoGradGuard no_grad;
  const Tensor& table = word_embeddings_->weight();
  // A copy that got no gradient (no micro-batch reached it) still takes part, with zeros.
  if (!table.grad().defined()) table.set_grad(Tensor::zeros(table.shape(), table.dtype(), table.device()));
  Tensor grad = table.grad();
  embedding_group.all_reduce(grad, ReduceOp::Sum);
}

std::vector<bool> GptModel::parameter_is_shared_copy() const {
  const bool copy = config_.tie_word_embeddings && last_piece_ && !first_piece_;
  std::vector<bool> shared;
  for (const Tensor& p : parameters()) shared.push_back(copy && p.impl() == word_embeddings_->weight().impl());
  return shared;
}

void GptModel::finalize_tensor_parallel_grads() const {
  if (!parallel_.sequence_parallel) return;
  NoGradGuard no_grad;
  // One all-reduce for all of them (Megatron coalesces them too), summed in f32 (f64 grads in f64).
  std::vector<Tensor> grads;
  DType sum_dtype = DType::F32;
  for (const Tensor& p : replicated_parameters_) {
    if (!p.grad().defined()) continue;
    grads.push_back(p.grad());
    if (p.grad().dtype() == DType::F64) sum_dtype = DType::F64;
  }
  if (grads.empty()) return;
  std::vector<Tensor> flat;
  for (const Tensor& grad : grads) flat.push_back(grad.reshape({grad.numel()}).to(sum_dtype));
  Tensor buffer = cat(flat, 0);
  parallel_.tp->all_reduce(buffer, ReduceOp::Sum);
  int64_t offset = 0;
  for (Tensor& grad : grads) {
    grad.copy_(buffer.narrow(0, offset, grad.numel()).view(grad.shape()));
    offset += grad.numel();
  }
}

std::vector<bool> GptModel::parameter_is_tensor_parallel_sharded() const {
  std::set<const TensorImpl*> replicated;
  for (const Tensor& p : replicated_parameters_) replicated.insert(p.impl());
  std::vector<bool> sharded;
  for (const Tensor& p : parameters()) sharded.push_back(parallel_.tp != nullptr && !replicated.contains(p.impl()));
  return sharded;
}

std::vector<std::vector<Tensor>> GptModel::fsdp_units() const {
  TS_CHECK(first_piece_ && last_piece_, "GptModel: FSDP units cover the whole model, but this is a pipeline piece; "
           "ZeRO-3 does not compose with pipeline parallelism here (use zero_stage 1 or 2 with pp)");
  std::vector<std::vector<Tensor>> units;
  units.push_back({word_embeddings_->weight()});
  if (position_embeddings_) units.back().push_back(position_embeddings_->weight());
  for (const auto& layer : layers_) units.push_back(layer->parameters());
  units.push_back(final_norm_->parameters());
  if (output_layer_) units.back().push_back(output_layer_->weight());
  // The optimizer's per-parameter flags (tp sharding) are aligned with parameters(): keep the order.
  std::vector<Tensor> flat;
  for (const auto& unit : units) flat.insert(flat.end(), unit.begin(), unit.end());
  const std::vector<Tensor> all = parameters();
  bool same = flat.size() == all.size();
  for (size_t i = 0; same && i < flat.size(); ++i) same = flat[i].is_same(all[i]);
  TS_CHECK(same, "GptModel::fsdp_units: the units do not list parameters() in order; update fsdp_units()");
  return units;
}

void GptModel::set_fsdp(FullyShardedDataParallel* fsdp) {
  if (fsdp != nullptr) {
    TS_CHECK(!parallel_.sequence_parallel, "GptModel: FSDP (zero_stage 3) does not support sequence_parallel yet; "
             "set parallel.sequence_parallel to false or use zero_stage 1 or 2");
    std::vector<std::vector<Tensor>> units = fsdp_units();
    bool same = units.size() == fsdp->num_units();
    for (size_t u = 0; same && u < units.size(); ++u) {
      const std::vector<Tensor>& theirs = fsdp->unit_parameters(u);
      same = units[u].size() == theirs.size();
      for (size_t i = 0; same && i < theirs.size(); ++i) same = units[u][i].is_same(theirs[i]);
    }
    TS_CHECK(same, "GptModel: set_fsdp needs a FullyShardedDataParallel built from this model's fsdp_units()");
  }
  fsdp_ = fsdp;
}

std::vector<size_t> GptModel::head_units() const {
  std::vector<size_t> units{layers_.size() + 1};
  if (!output_layer_) units.push_back(0);
  return units;
}

void GptModel::fsdp_pre_forward(const std::vector<size_t>& units) const {
  if (fsdp_) fsdp_->pre_forward(units);
}

std::vector<Tensor> GptModel::fsdp_post_forward(const std::vector<size_t>& units, std::vector<Tensor> outputs) const {
  return fsdp_ ? fsdp_->post_forward(units, std::move(outputs)) : outputs;
}

}  // namespace tessera
