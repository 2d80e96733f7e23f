// Stochastic gradient descent with momentum and L2 weight decay,
// PyTorch semantics: g += wd * p; buf = momentum * buf + g; p -= lr * buf.
#pragma once

#include "optim/optimizer.h"

namespace tessera {

struct SgdOptions {
  double lr = 0.1;
  double momentum = 0.0;
  double weight_decay = 0.0;
};

class Sgd final : public Optimizer {
 public:
  Sgd(std::vector<Tensor> parameters, SgdOptions options);
  void step() override;

 private:
  SgdOptions options_;
  std::vector<Tensor> momentum_buffers_;
};

}  // namespace tessera
