// The transformer MLP. Parameters (Megatron-core names):
//   linear_fc1.weight [F, C] for GELU, or [2F, C] for SwiGLU holding the gate rows then the
//       up rows (Megatron's fused layout) (+ .bias)
//   linear_fc2.weight [C, F] (+ .bias), initialised with the scaled residual std.
#pragma once

#include "core/nn/layers.h"
#include "core/nn/module.h"
#include "models/transformer_config.h"

namespace tessera {

class FeedForward : public Module {
 public:
  FeedForward(const TransformerConfig& config, Generator& generator, ParamOptions options);
  Tensor forward(const Tensor& x) const;

 private:
  Activation activation_;
  int64_t ffn_;
  std::shared_ptr<Linear> fc1_;
  std::shared_ptr<Linear> fc2_;
};

}  // namespace tessera
