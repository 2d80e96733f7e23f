// AdamW (decoupled weight decay, PyTorch semantics) over the backend's fused multi-tensor
// kernel: one launch per device and decay group updates every parameter.
// Mixed precision: a parameter that is not f32 (the bf16 compute copy) gets an f32 master
// weight; the kernel updates the master and writes the rounded compute copy in the same
// pass. Gradients may be f32 (accumulated into an f32 main-grad buffer installed with
// set_grad, as Megatron does) or the parameter's dtype.
// By default 1-D parameters (biases, norm weights) take no weight decay, as in Megatron.
#pragma once

#include "core/backend.h"
#include "optim/optimizer.h"

namespace tessera {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decay_1d_parameters = false;
};

class AdamW final : public Optimizer {
 public:
  AdamW(std::vector<Tensor> parameters, AdamWOptions options);
  void step() override { step(1.0); }
  // Gradients are divided by grad_scale first (gradient clipping, loss-scale removal).
  void step(double grad_scale);
  int64_t steps_taken() const { return steps_; }
  // The f32 weights the update works on (the parameter itself when it is f32).
  const Tensor& master_weight(size_t i) const { return states_.at(i).master; }

 private:
  struct ParamState {
    Tensor master;
    Tensor exp_avg;
    Tensor exp_avg_sq;
    bool decay = true;
  };
  AdamWOptions options_;
  std::vector<ParamState> states_;
  int64_t steps_ = 0;
};

}  // namespace tessera
