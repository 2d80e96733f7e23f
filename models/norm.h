// The model's normalisation layer (LayerNorm or RMSNorm, per config), with the fused
// residual-add form used between sublayers. Parameters: weight [C] (+ bias [C] for LayerNorm).
#pragma once

#include <utility>

#include "core/nn/layers.h"
#include "core/nn/module.h"
#include "models/transformer_config.h"

namespace tessera {

class Norm : public Module {
 public:
  Norm(const TransformerConfig& config, ParamOptions options);
  Tensor forward(const Tensor& x) const;
  // h = delta + residual; returns {norm(h), h}.
  std::pair<Tensor, Tensor> add_forward(const Tensor& delta, const Tensor& residual) const;

 private:
  Normalization kind_;
  double eps_;
  Tensor weight_;
  Tensor bias_;
};

}  // namespace tessera
