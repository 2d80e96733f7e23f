#include "core/autograd/engine.h"

#include <queue>
#include <unordered_map>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/ops.h"

namespace tessera {

namespace {

struct LaterFirst {
  bool operator()(const std::shared_ptr<Node>& a, const std::shared_ptr<Node>& b) const {
    return a->sequence_nr() < b->sequence_nr();
  }
};

// Number of edges pointing at each node reachable from the roots.
std::unordered_map<Node*, int> count_dependencies(const std::vector<Edge>& root_edges) {
  std::unordered_map<Node*, int> dependencies;
  std::vector<Node*> stack;
  for (const Edge& edge : root_edges) {
    if (dependencies.emplace(edge.node.get(), 0).second) stack.push_back(edge.node.get());
  }
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const Edge& next : node->next_edges()) {
      if (!next.valid()) continue;
      auto [it, inserted] = dependencies.emplace(next.node.get(), 0);
      ++it->second;
      if (inserted) stack.push_back(next.node.get());
    }
  }
  return dependencies;
}

void accumulate(std::vector<Tensor>& buffer, uint32_t input_nr, const Tensor& grad, const Node& node) {
  const OutputMeta& meta = node.outputs().at(input_nr);
  TS_CHECK(grad.shape() == meta.shape, "backward: gradient for output ", input_nr, " of '",
           node.name(), "' has shape ", grad.shape(), " but the output has shape ", meta.shape);
  Tensor& slot = buffer[input_nr];
  slot = slot.defined() ? add(slot, grad) : grad;
}

std::vector<Tensor> complete_with_zeros(std::vector<Tensor> grads, const Node& node) {
  grads.resize(node.outputs().size());
  for (size_t i = 0; i < grads.size(); ++i) {
    if (!grads[i].defined()) {
      const OutputMeta& meta = node.outputs()[i];
      grads[i] = Tensor::zeros(meta.shape, meta.dtype, meta.device);
    }
  }
  return grads;
}

thread_local bool keeps_saved_tensors = false;

}  // namespace

bool backward_keeps_saved_tensors() { return keeps_saved_tensors; }

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_roots,
                  bool retain_graph) {
  TS_CHECK(roots.size() == grad_roots.size(), "backward: ", roots.size(), " roots but ",
           grad_roots.size(), " root gradients");
  NoGradGuard no_grad;
  struct KeepsSaved {  // restores the outer pass's flag (activation checkpointing nests passes)
    bool outer = keeps_saved_tensors;
    explicit KeepsSaved(bool keep) { keeps_saved_tensors = keep; }
    ~KeepsSaved() { keeps_saved_tensors = outer; }
  } keeps_saved(retain_graph);

  std::vector<Edge> root_edges;
  for (const Tensor& root : roots) {
    Edge edge = gradient_edge(root);
    TS_CHECK(edge.valid(), "backward: the tensor ", root,
             " does not require grad and has no grad_fn (was it computed under no_grad or detached?)");
    root_edges.push_back(edge);
  }
  std::unordered_map<Node*, int> dependencies = count_dependencies(root_edges);
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  std::priority_queue<std::shared_ptr<Node>, std::vector<std::shared_ptr<Node>>, LaterFirst> ready;

  for (size_t i = 0; i < roots.size(); ++i) {
    Node& node = *root_edges[i].node;
    auto& buffer = buffers[&node];
    buffer.resize(node.outputs().size());
    accumulate(buffer, root_edges[i].input_nr, grad_roots[i], node);
  }
  for (const Edge& edge : root_edges) {
    // Queue each root node once, and only if no other root feeds it.
    if (dependencies[edge.node.get()] == 0) {
      dependencies[edge.node.get()] = -1;
      ready.push(edge.node);
    }
  }

  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.top();
    ready.pop();
    std::vector<Tensor> dL_doutputs = complete_with_zeros(std::move(buffers[node.get()]), *node);
    buffers.erase(node.get());
    std::vector<Tensor> dL_dinputs = node->apply(dL_doutputs);
    if (!retain_graph) node->release_saved();

    const std::vector<Edge>& edges = node->next_edges();
    for (size_t j = 0; j < edges.size(); ++j) {
      if (!edges[j].valid()) continue;
      Node* next = edges[j].node.get();
      auto& buffer = buffers[next];
      buffer.resize(next->outputs().size());
      if (j < dL_dinputs.size() && dL_dinputs[j].defined()) {
        accumulate(buffer, edges[j].input_nr, dL_dinputs[j], *next);
      }
      if (--dependencies[next] == 0) ready.push(edges[j].node);
    }
  }
}

}  // namespace tessera
