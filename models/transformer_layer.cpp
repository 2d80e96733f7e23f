#include "models/transformer_layer.h"

#include "core/ops/ops.h"

namespace tessera {

TransformerLayer::TransformerLayer(const TransformerConfig& config, Generator& init_generator, ParamOptions options,
                                   const ModelParallelism& parallel)
    : hidden_dropout_(config.hidden_dropout) {
  input_norm_ = register_module("input_layernorm", std::make_shared<Norm>(config, options));
  attention_ = register_module("self_attention",
                               std::make_shared<SelfAttention>(config, init_generator, options, parallel));
  pre_mlp_norm_ = register_module("pre_mlp_layernorm", std::make_shared<Norm>(config, options));
  mlp_ = register_module("mlp", std::make_shared<FeedForward>(config, init_generator, options, parallel));
}

std::vector<Tensor> TransformerLayer::replicated_parameters() const {
  std::vector<Tensor> replicated = input_norm_->parameters();
  for (const Tensor& p : attention_->replicated_parameters()) replicated.push_back(p);
  for (const Tensor& p : pre_mlp_norm_->parameters()) replicated.push_back(p);
  for (const Tensor& p : mlp_->replicated_parameters()) replicated.push_back(p);
  return replicated;
}

Tensor TransformerLayer::maybe_dropout(const Tensor& x, Generator* generator) const {
  if (hidden_dropout_ == 0.0 || !is_training()) return x;
  TS_CHECK(generator != nullptr, "TransformerLayer: hidden_dropout ", hidden_dropout_, " needs a dropout generator");
  return dropout(x, hidden_dropout_, *generator);
}

ResidualStream TransformerLayer::forward(const ResidualStream& in, const RopeTables* rope_tables,
                                         Generator* dropout_generator, LayerCache cache,
                                         const DocumentLengths* documents) const {
  Tensor x, residual;
  if (in.pending.defined()) {
    std::tie(x, residual) = input_norm_->add_forward(in.pending, in.residual);
  } else {
    residual = in.residual;
    x = input_norm_->forward(residual);
  }
  Tensor attended = maybe_dropout(attention_->forward(x, rope_tables, cache, documents), dropout_generator);
  auto [x2, residual2] = pre_mlp_norm_->add_forward(attended, residual);
  return {residual2, maybe_dropout(mlp_->forward(x2), dropout_generator)};
}

}  // namespace tessera
