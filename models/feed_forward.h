// The transformer MLP. Parameters (Megatron-core names):
//   linear_fc1.weight [F, C] for GELU, or [2F, C] for SwiGLU holding the gate rows then the
//       up rows (Megatron's fused layout) (+ .bias)
//   linear_fc2.weight [C, F] (+ .bias), initialised with the scaled residual std.
// Tensor parallel (see model_parallelism.h): linear_fc1 is column-parallel ([F/tp, C]; for
// SwiGLU rank r holds [gate_r; up_r], the r-th slice of the gate rows then of the up rows),
// linear_fc2 row-parallel ([C, F/tp], bias replicated).
#pragma once

#include <vector>

#include "core/nn/module.h"
#include "models/model_parallelism.h"
#include "models/transformer_config.h"
#include "parallel/tensor_parallel_linear.h"

namespace tessera {

class FeedForward : public Module {
 public:
  FeedForward(const TransformerConfig& config, Generator& generator, ParamOptions options,
              const ModelParallelism& parallel = {});
  // x [B, T, C] ([B, T/tp, C] with sequence parallelism) -> the same shape.
  Tensor forward(const Tensor& x) const;
  // Parameters every tp rank holds whole (linear_fc2.bias).
  std::vector<Tensor> replicated_parameters() const;

 private:
  Activation activation_;
  std::shared_ptr<ColumnParallelLinear> fc1_;
  std::shared_ptr<RowParallelLinear> fc2_;
};

}  // namespace tessera
