#include "models/feed_forward.h"

#include <cmath>

#include "core/ops/ops.h"

namespace tessera {

FeedForward::FeedForward(const TransformerConfig& config, Generator& generator, ParamOptions options)
    : activation_(config.activation), ffn_(config.ffn_hidden_size) {
  int64_t fc1_out = activation_ == Activation::SwiGLU ? 2 * ffn_ : ffn_;
  double residual_std = config.init_method_std / std::sqrt(2.0 * double(config.num_layers));
  fc1_ = register_module("linear_fc1", std::make_shared<Linear>(config.hidden_size, fc1_out, config.add_bias_linear,
                                                                generator, config.init_method_std, options));
  fc2_ = register_module("linear_fc2", std::make_shared<Linear>(ffn_, config.hidden_size, config.add_bias_linear,
                                                                generator, residual_std, options));
}

Tensor FeedForward::forward(const Tensor& x) const {
  Tensor h = fc1_->forward(x);
  if (activation_ == Activation::SwiGLU) {
    std::vector<Tensor> gate_up = split(h, {ffn_, ffn_}, -1);
    h = swiglu(gate_up[0], gate_up[1]);
  } else {
    h = gelu(h);
  }
  return fc2_->forward(h);
}

}  // namespace tessera
