#include "core/autograd/node.h"

#include <atomic>

#include "core/autograd/grad_mode.h"

namespace tessera {

namespace {
// Process-wide creation counter: only ever increases, used to order nodes in backward.
std::atomic<uint64_t> next_sequence_nr{0};
}  // namespace

Node::Node() : sequence_nr_(next_sequence_nr.fetch_add(1, std::memory_order_relaxed)) {}

void Node::add_output(const Tensor& output) {
  outputs_.push_back({output.shape(), output.dtype(), output.device()});
}

std::vector<Tensor> FunctionNode::apply(const std::vector<Tensor>& dL_doutputs) {
  TS_CHECK(backward_ != nullptr, "backward through '", name_,
           "' a second time: its saved tensors were released after the first backward; pass "
           "retain_graph=true to the first backward() to keep them");
  std::vector<bool> needs_input_grad;
  needs_input_grad.reserve(next_edges().size());
  for (const Edge& edge : next_edges()) needs_input_grad.push_back(edge.valid());
  std::vector<Tensor> grads = backward_(dL_doutputs, needs_input_grad);
  TS_CHECK(grads.size() == next_edges().size(), "backward of '", name_, "' returned ", grads.size(),
           " gradients for ", next_edges().size(), " inputs");
  return grads;
}

std::vector<Tensor> AccumulateGrad::apply(const std::vector<Tensor>& dL_doutputs) {
  const Tensor& incoming = dL_doutputs.at(0);
  const Tensor& current = leaf_.grad();
  if (!current.defined()) {
    // Always a fresh buffer: the incoming gradient may alias another tensor's (an identity
    // backward passes its input through), and later passes accumulate into it in place.
    Tensor grad = Tensor::empty(leaf_.shape(), leaf_.dtype(), leaf_.device());
    grad.copy_(incoming);
    leaf_.set_grad(grad);
  } else {
    Tensor target = current;
    target.add_(incoming);
  }
  for (const auto& hook : leaf_.impl()->autograd.grad_ready_hooks) hook(leaf_);
  return {};
}

Edge gradient_edge(const Tensor& tensor) {
  AutogradMeta& meta = tensor.impl()->autograd;
  if (meta.grad_fn) return {meta.grad_fn, meta.output_nr};
  if (!meta.requires_grad) return {};
  std::shared_ptr<Node> accumulator = meta.grad_accumulator.lock();
  if (!accumulator) {
    accumulator = std::make_shared<AccumulateGrad>(tensor);
    meta.grad_accumulator = accumulator;
  }
  return {accumulator, 0};
}

bool record_op(const std::string& name, const std::vector<Tensor>& inputs,
               std::vector<Tensor>& outputs, BackwardFn backward) {
  if (!GradMode::is_enabled()) return false;
  bool any_requires_grad = false;
  for (const Tensor& input : inputs) any_requires_grad |= input.defined() && input.requires_grad();
  if (!any_requires_grad) return false;

  auto node = std::make_shared<FunctionNode>(name, std::move(backward));
  std::vector<Edge> edges;
  edges.reserve(inputs.size());
  for (const Tensor& input : inputs) edges.push_back(input.defined() ? gradient_edge(input) : Edge{});
  node->set_next_edges(std::move(edges));
  for (size_t i = 0; i < outputs.size(); ++i) {
    AutogradMeta& meta = outputs[i].impl()->autograd;
    meta.grad_fn = node;
    meta.output_nr = static_cast<uint32_t>(i);
    node->add_output(outputs[i]);
  }
  return true;
}

Tensor record_op(const std::string& name, const std::vector<Tensor>& inputs, Tensor output,
                 BackwardFn backward) {
  std::vector<Tensor> outputs{std::move(output)};
  record_op(name, inputs, outputs, std::move(backward));
  return outputs[0];
}

}  // namespace tessera
