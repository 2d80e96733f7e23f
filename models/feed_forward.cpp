#include "models/feed_forward.h"

#include <cmath>

#include "core/ops/ops.h"

namespace tessera {

FeedForward::FeedForward(const TransformerConfig& config, Generator& generator, ParamOptions options,
                         const ModelParallelism& parallel)
    : activation_(config.activation) {
  const bool swiglu = activation_ == Activation::SwiGLU;
  const int64_t ffn = config.ffn_hidden_size;
  double residual_std = config.init_method_std / std::sqrt(2.0 * double(config.num_layers));
  fc1_ = register_module("linear_fc1", std::make_shared<ColumnParallelLinear>(
                                           config.hidden_size, swiglu ? 2 * ffn : ffn, parallel.tp, generator,
                                           ColumnParallelOptions{.bias = config.add_bias_linear,
                                                                 .sequence_parallel = parallel.sequence_parallel,
                                                                 .sequence_dim = kSequenceDim,
                                                                 .output_blocks = swiglu ? 2 : 1,
                                                                 .init_std = config.init_method_std,
                                                                 .param = options}));
  fc2_ = register_module("linear_fc2", std::make_shared<RowParallelLinear>(
                                           ffn, config.hidden_size, parallel.tp, generator,
                                           RowParallelOptions{.bias = config.add_bias_linear,
                                                              .sequence_parallel = parallel.sequence_parallel,
                                                              .sequence_dim = kSequenceDim,
                                                              .init_std = residual_std,
                                                              .param = options}));
}

Tensor FeedForward::forward(const Tensor& x) const {
  // fc1's output packs gate and up per rank; fc2 keeps it, not swiglu(gate, up) nor split copies,
  // and recomputes the SwiGLU in its backward (core/ops linear_of_swiglu).
  if (activation_ == Activation::SwiGLU) return fc2_->forward_of_swiglu(fc1_->forward(x));
  // fc1's GEMM also applies the GELU in its epilogue; fc2 keeps h, not gelu(h), for the
  // backward, which recomputes gelu(h) (core/ops linear_of_gelu).
  LinearAndGelu h = fc1_->forward_and_gelu(x);
  return fc2_->forward_of_gelu(h.pre_activation, h.activation);
}

std::vector<Tensor> FeedForward::replicated_parameters() const {
  if (!fc2_->bias().defined()) return {};
  return {fc2_->bias()};
}

}  // namespace tessera
