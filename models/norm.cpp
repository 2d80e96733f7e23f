#include "models/norm.h"

#include "core/ops/ops.h"

namespace tessera {

Norm::Norm(const TransformerConfig& config, ParamOptions options)
    : kind_(config.normalization), eps_(config.norm_epsilon) {
  weight_ = register_parameter("weight", Tensor::ones({config.hidden_size}, options.dtype, options.device));
  if (kind_ == Normalization::LayerNorm)
    bias_ = register_parameter("bias", Tensor::zeros({config.hidden_size}, options.dtype, options.device));
}

Tensor Norm::forward(const Tensor& x) const {
  return kind_ == Normalization::LayerNorm ? layer_norm(x, weight_, bias_, eps_) : rms_norm(x, weight_, eps_);
}

std::pair<Tensor, Tensor> Norm::add_forward(const Tensor& delta, const Tensor& residual) const {
  return kind_ == Normalization::LayerNorm ? add_layer_norm(delta, residual, weight_, bias_, eps_)
                                           : add_rms_norm(delta, residual, weight_, eps_);
}

}  // namespace tessera
