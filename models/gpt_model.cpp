#include "models/gpt_model.h"

#include "core/autograd/checkpoint.h"
#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"

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

}  // namespace

GptModel::GptModel(const TransformerConfig& config, uint64_t seed, ParamOptions options)
    : config_(config), dropout_generator_(seed ^ 0x9e3779b97f4a7c15ULL) {
  config_.validate();
  Generator init(seed);
  auto embedding = register_module("embedding", std::make_shared<Container>());
  word_embeddings_ = embedding->add(
      "word_embeddings", std::make_shared<Embedding>(config_.padded_vocab_size(), config_.hidden_size, init,
                                                     config_.init_method_std, options));
  if (config_.position_embedding == PositionEmbedding::Learned) {
    position_embeddings_ = embedding->add(
        "position_embeddings", std::make_shared<Embedding>(config_.max_position_embeddings, config_.hidden_size, init,
                                                           config_.init_method_std, options));
  }
  auto decoder = register_module("decoder", std::make_shared<Container>());
  layers_ = decoder->add("layers", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < config_.num_layers; ++i)
    layers_->push_back(std::make_shared<TransformerLayer>(config_, init, options));
  final_norm_ = decoder->add("final_layernorm", std::make_shared<Norm>(config_, options));
  if (!config_.tie_word_embeddings) {
    output_layer_ = register_module("output_layer", std::make_shared<Linear>(config_.hidden_size,
                                                                             config_.padded_vocab_size(), false, init,
                                                                             config_.init_method_std, options));
  }
}

const RopeTables* GptModel::cached_rope_tables(int64_t seq_len, Device device) const {
  if (config_.position_embedding != PositionEmbedding::Rope) return nullptr;
  std::lock_guard<std::mutex> lock(rope_mutex_);
  auto key = std::make_pair(seq_len, device.str());
  auto it = rope_cache_.find(key);
  if (it == rope_cache_.end()) {
    DType dtype = word_embeddings_->weight().dtype();
    auto [cos, sin] = rope_tables(seq_len, config_.head_dim(), config_.rotary_base, config_.rope_scaling, dtype, device);
    it = rope_cache_.emplace(key, RopeTables{cos, sin}).first;
  }
  return &it->second;
}

Tensor GptModel::embed(const Tensor& tokens, const Tensor& positions) const {
  Tensor h = word_embeddings_->forward(tokens);
  return position_embeddings_ ? add(h, position_embeddings_->forward(positions)) : h;
}

Tensor GptModel::hidden_states(const Tensor& tokens) const {
  TS_CHECK(tokens.dim() == 2, "GptModel: tokens must be [B, T], got ", tokens.shape());
  int64_t t = tokens.size(1);
  TS_CHECK(t <= config_.max_position_embeddings, "GptModel: sequence length ", t, " exceeds max_position_embeddings ",
           config_.max_position_embeddings);
  Tensor h = embed(tokens, position_embeddings_ ? Tensor::arange(t, DType::I64, tokens.device()) : Tensor());
  const RopeTables* rope = cached_rope_tables(t, tokens.device());
  Generator* dropout_rng = config_.hidden_dropout > 0.0 && is_training() ? &dropout_generator_ : nullptr;
  ResidualStream stream{h, Tensor()};
  for (size_t i = 0; i < layers_->size(); ++i) {
    const auto& layer = static_cast<const TransformerLayer&>(*(*layers_)[i]);
    if (!recompute_) {
      stream = layer.forward(stream, rope, dropout_rng);
      continue;
    }
    std::vector<Generator*> generators;
    if (dropout_rng) generators.push_back(dropout_rng);
    auto region = [&layer, rope, dropout_rng](const std::vector<Tensor>& in) {
      ResidualStream out = layer.forward({in[0], in[1]}, rope, dropout_rng);
      return std::vector<Tensor>{out.residual, out.pending};
    };
    std::vector<Tensor> out = checkpoint(region, {stream.residual, stream.pending}, generators);
    stream = {out[0], out[1]};
  }
  return final_norm(stream);
}

Tensor GptModel::final_norm(const ResidualStream& stream) const {
  return stream.pending.defined() ? final_norm_->add_forward(stream.pending, stream.residual).first
                                  : final_norm_->forward(stream.residual);
}

Tensor GptModel::logits(const Tensor& hidden) const {
  const Tensor& table = output_layer_ ? output_layer_->weight() : word_embeddings_->weight();
  // Only the real vocabulary's rows: a contiguous leading slice of the padded table.
  return linear(hidden, table.narrow(0, 0, config_.vocab_size));
}

Tensor GptModel::forward(const Tensor& tokens) const { return logits(hidden_states(tokens)); }

KvCache GptModel::new_kv_cache(int64_t batch, int64_t capacity) const {
  const Tensor& weight = word_embeddings_->weight();
  return KvCache(config_, batch, capacity, weight.dtype(), weight.device());
}

Tensor GptModel::forward(const Tensor& tokens, KvCache& cache) const {
  TS_CHECK(!is_training(), "GptModel: decoding with a KV cache runs in eval mode; call eval() first");
  TS_CHECK(tokens.dim() == 2 && tokens.size(0) == cache.batch(),
           "GptModel: tokens must be [B, T] with B = ", cache.batch(), " (the cache's rows), got ", tokens.shape());
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
  for (size_t i = 0; i < layers_->size(); ++i) {
    const auto& layer = static_cast<const TransformerLayer&>(*(*layers_)[i]);
    stream = layer.forward(stream, rope, nullptr, LayerCache{&cache, static_cast<int64_t>(i)});
  }
  cache.advance(t);
  return logits(final_norm(stream));
}

Tensor GptModel::loss(const LmBatch& batch, LossReduction reduction) const {
  CrossEntropyOptions options;
  options.loss_mask = batch.loss_mask;
  options.reduction = reduction;
  return cross_entropy(forward(batch.tokens), batch.labels, options);
}

}  // namespace tessera
