// AdamW (decoupled weight decay, PyTorch semantics) over the backend's fused multi-tensor
// kernel: one launch per device and decay group updates every parameter.
// Mixed precision: a parameter that is not f32 (the bf16 compute copy) gets an f32 master
// weight; the kernel updates the master and writes the rounded compute copy in the same
// pass. Gradients may be f32 (accumulated into an f32 main-grad buffer installed with
// set_grad, as Megatron does) or the parameter's dtype.
// By default 1-D parameters (biases, norm weights) take no weight decay, as in Megatron.
// Checkpoints read the per-parameter state (master, exp_avg, exp_avg_sq; f32, in constructor
// order) and the step count through the accessors below and put them back with load_state.
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
  // False when parameter i is f32 and so is its own master weight.
  bool has_separate_master(size_t i) const { return !parameters_.at(i).is_same(states_.at(i).master); }
  const Tensor& exp_avg(size_t i) const { return states_.at(i).exp_avg; }
  const Tensor& exp_avg_sq(size_t i) const { return states_.at(i).exp_avg_sq; }

  // Restores parameter i's state from a checkpoint: values are copied in (converted to f32 on
  // the parameter's device) and must have the parameter's shape. The master's value lands in
  // the parameter itself when the parameter is its own master.
  void load_state(size_t i, const Tensor& master, const Tensor& exp_avg, const Tensor& exp_avg_sq);
  // The bias correction of the next step uses steps + 1.
  void set_steps_taken(int64_t steps);

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
