#include "optim/adamw.h"

#include <map>

#include "core/autograd/grad_mode.h"

namespace tessera {

AdamW::AdamW(std::vector<Tensor> parameters, AdamWOptions options)
    : Optimizer(std::move(parameters)), options_(options) {
  TS_CHECK(options.lr >= 0.0, "AdamW: lr ", options.lr, " must be >= 0");
  TS_CHECK(options.beta1 >= 0.0 && options.beta1 < 1.0 && options.beta2 >= 0.0 && options.beta2 < 1.0, "AdamW: betas (",
           options.beta1, ", ", options.beta2, ") must be in [0, 1)");
  TS_CHECK(options.eps > 0.0, "AdamW: eps ", options.eps, " must be positive");
  learning_rate_ = options.lr;
  NoGradGuard no_grad;
  for (const Tensor& p : parameters_) {
    TS_CHECK(is_floating(p.dtype()) && p.is_contiguous(), "AdamW: parameters must be contiguous floating tensors, got ",
             p);
    ParamState state;
    state.master = p.dtype() == DType::F32 ? p : p.to(DType::F32).contiguous().clone();
    state.exp_avg = Tensor::zeros(p.shape(), DType::F32, p.device());
    state.exp_avg_sq = Tensor::zeros(p.shape(), DType::F32, p.device());
    state.decay = options.decay_1d_parameters || p.dim() > 1;
    states_.push_back(std::move(state));
  }
}

void AdamW::load_state(size_t i, const Tensor& master, const Tensor& exp_avg, const Tensor& exp_avg_sq) {
  TS_CHECK(i < states_.size(), "AdamW::load_state: parameter index ", i, " is outside the optimizer's ", states_.size(),
           " parameters");
  const Shape& shape = parameters_[i].shape();
  for (const Tensor* t : {&master, &exp_avg, &exp_avg_sq}) {
    TS_CHECK(t->shape() == shape, "AdamW::load_state: parameter ", i, " has shape ", shape,
             " but the saved state has shape ", t->shape());
  }
  NoGradGuard no_grad;
  ParamState& s = states_[i];
  s.master.copy_(master);
  s.exp_avg.copy_(exp_avg);
  s.exp_avg_sq.copy_(exp_avg_sq);
}

void AdamW::set_steps_taken(int64_t steps) {
  TS_CHECK(steps >= 0, "AdamW::set_steps_taken: ", steps, " must be >= 0");
  steps_ = steps;
}

void AdamW::step(double grad_scale) {
  TS_CHECK(grad_scale > 0.0, "AdamW::step: grad_scale ", grad_scale, " must be positive");
  ++steps_;
  // One fused launch per (device, decay group).
  std::map<std::pair<int, bool>, std::vector<AdamWParam>> groups;
  std::map<std::pair<int, bool>, Device> devices;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const Tensor& p = parameters_[i];
    if (!p.grad().defined()) continue;
    ParamState& s = states_[i];
    Device device = p.device();
    int key_device = device.is_cpu() ? -1 : device.index;
    auto key = std::make_pair(key_device, s.decay);
    devices.emplace(key, device);
    groups[key].push_back(
        {s.master, p.grad().contiguous(), s.exp_avg, s.exp_avg_sq, p.is_same(s.master) ? Tensor() : p});
  }
  for (auto& [key, params] : groups) {
    AdamWHyper hyper;
    hyper.lr = learning_rate_;
    hyper.beta1 = options_.beta1;
    hyper.beta2 = options_.beta2;
    hyper.eps = options_.eps;
    hyper.weight_decay = key.second ? options_.weight_decay : 0.0;
    hyper.step = steps_;
    hyper.grad_scale = grad_scale;
    backend_for(devices.at(key)).adamw(params, hyper);
  }
}

}  // namespace tessera
