#include "optim/sgd.h"

#include "core/autograd/grad_mode.h"

namespace tessera {

Sgd::Sgd(std::vector<Tensor> parameters, SgdOptions options)
    : Optimizer(std::move(parameters)), options_(options), momentum_buffers_(parameters_.size()) {
  TS_CHECK(options.lr > 0.0, "Sgd: lr ", options.lr, " must be positive");
  TS_CHECK(options.momentum >= 0.0 && options.momentum < 1.0, "Sgd: momentum ", options.momentum,
           " must be in [0, 1)");
  learning_rate_ = options.lr;
}

void Sgd::step() {
  NoGradGuard no_grad;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    Tensor& p = parameters_[i];
    if (!p.grad().defined()) continue;
    Tensor update = p.grad();
    if (options_.weight_decay != 0.0) {
      update = update.clone();
      update.add_(p, options_.weight_decay);
    }
    if (options_.momentum > 0.0) {
      Tensor& buffer = momentum_buffers_[i];
      if (!buffer.defined()) {
        buffer = update.clone();
      } else {
        buffer.mul_(options_.momentum);
        buffer.add_(update);
      }
      update = buffer;
    }
    p.add_(update, -learning_rate_);
  }
}

}  // namespace tessera
