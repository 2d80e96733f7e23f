#include "core/autograd/checkpoint.h"

#include "core/autograd/engine.h"
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"

namespace tessera {

namespace {

std::vector<PhiloxState> snapshot(const std::vector<Generator*>& generators) {
  std::vector<PhiloxState> states;
  for (const Generator* g : generators) states.push_back(g->state());
  return states;
}

void restore(const std::vector<Generator*>& generators, const std::vector<PhiloxState>& states) {
  for (size_t i = 0; i < generators.size(); ++i) generators[i]->set_state(states[i]);
}

}  // namespace

std::vector<Tensor> checkpoint(const RegionFn& region, const std::vector<Tensor>& inputs,
                               const std::vector<Generator*>& generators) {
  std::vector<PhiloxState> forward_states = snapshot(generators);
  std::vector<Tensor> detached;
  for (const Tensor& input : inputs) detached.push_back(input.defined() ? input.detach() : Tensor());
  std::vector<Tensor> outputs;
  {
    NoGradGuard no_grad;
    outputs = region(detached);
  }
  record_op("checkpoint", inputs, outputs, [region, detached, generators, forward_states](
                                               const std::vector<Tensor>& dL_doutputs,
                                               const std::vector<bool>& needs_input_grad) {
    std::vector<Tensor> rerun_inputs;
    for (size_t i = 0; i < detached.size(); ++i) {
      Tensor input = detached[i].defined() ? detached[i].detach() : Tensor();
      if (needs_input_grad[i]) input.set_requires_grad(true);
      rerun_inputs.push_back(input);
    }
    std::vector<PhiloxState> backward_states = snapshot(generators);
    restore(generators, forward_states);
    std::vector<Tensor> rerun_outputs;
    {
      EnableGradGuard enable_grad;
      rerun_outputs = region(rerun_inputs);
    }
    restore(generators, backward_states);

    std::vector<Tensor> roots, root_grads;
    for (size_t i = 0; i < rerun_outputs.size(); ++i) {
      if (rerun_outputs[i].requires_grad()) {
        roots.push_back(rerun_outputs[i]);
        root_grads.push_back(dL_doutputs[i]);
      }
    }
    if (!roots.empty()) run_backward(roots, root_grads, /*retain_graph=*/false);
    std::vector<Tensor> grads;
    for (const Tensor& input : rerun_inputs) grads.push_back(input.defined() ? input.grad() : Tensor());
    return grads;
  });
  return outputs;
}

}  // namespace tessera
