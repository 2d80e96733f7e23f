// Optimizer interface: updates parameters in place from their .grad under no_grad.
// Parameters without a gradient this step are skipped.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace tessera {

class Optimizer {
 public:
  explicit Optimizer(std::vector<Tensor> parameters) : parameters_(std::move(parameters)) {}
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  double learning_rate() const { return learning_rate_; }
  void set_learning_rate(double lr) { learning_rate_ = lr; }
  const std::vector<Tensor>& parameters() const { return parameters_; }

 protected:
  std::vector<Tensor> parameters_;
  double learning_rate_ = 0.0;
};

}  // namespace tessera
