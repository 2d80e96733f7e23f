// The autograd graph. A Node is one recorded op: it maps the gradients of its outputs
// (dL_doutputs, one per output) to the gradients of its inputs, which flow along next_edges.
// An Edge (node, input_nr) says "this gradient is input number input_nr of that node".
// Leaves that require grad end in an AccumulateGrad node, which adds into tensor.grad and then
// fires the leaf's grad-ready hooks (DDP and ZeRO bucket on them).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace tessera {

class Node;

struct Edge {
  std::shared_ptr<Node> node;  // null: this input needs no gradient
  uint32_t input_nr = 0;
  bool valid() const { return node != nullptr; }
};

// Shape/dtype/device of an output, so a missing output gradient can be filled with zeros.
struct OutputMeta {
  Shape shape;
  DType dtype;
  Device device;
};

class Node {
 public:
  Node();
  virtual ~Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // dL_doutputs has one defined tensor per output; returns one gradient per next edge
  // (undefined where that edge needs none).
  virtual std::vector<Tensor> apply(const std::vector<Tensor>& dL_doutputs) = 0;
  virtual std::string name() const = 0;
  // Drops saved tensors after a backward pass without retain_graph.
  virtual void release_saved() {}

  const std::vector<Edge>& next_edges() const { return next_edges_; }
  void set_next_edges(std::vector<Edge> edges) { next_edges_ = std::move(edges); }
  const std::vector<OutputMeta>& outputs() const { return outputs_; }
  void add_output(const Tensor& output);
  // Creation order; the engine runs later nodes first, so gradients become ready in reverse
  // order of the forward pass (what bucketed gradient reduction wants).
  uint64_t sequence_nr() const { return sequence_nr_; }

 private:
  std::vector<Edge> next_edges_;
  std::vector<OutputMeta> outputs_;
  uint64_t sequence_nr_;
};

// Gradient of an op, written as a function that captures only what backward needs.
// needs_input_grad[i] tells whether input i wants a gradient (skip the work when not).
using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& dL_doutputs,
                                                     const std::vector<bool>& needs_input_grad)>;

class FunctionNode final : public Node {
 public:
  FunctionNode(std::string name, BackwardFn backward) : name_(std::move(name)), backward_(std::move(backward)) {}
  std::vector<Tensor> apply(const std::vector<Tensor>& dL_doutputs) override;
  std::string name() const override { return name_; }
  void release_saved() override { backward_ = nullptr; }

 private:
  std::string name_;
  BackwardFn backward_;
};

class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(Tensor leaf) : leaf_(std::move(leaf)) { add_output(leaf_); }
  std::vector<Tensor> apply(const std::vector<Tensor>& dL_doutputs) override;
  std::string name() const override { return "AccumulateGrad"; }

 private:
  Tensor leaf_;
};

// The edge a gradient for `tensor` should flow along (null edge if it needs none).
Edge gradient_edge(const Tensor& tensor);

// Records an op in the graph when grad mode is on and any input requires grad: `outputs`
// get a FunctionNode as grad_fn. Returns whether a node was recorded.
bool record_op(const std::string& name, const std::vector<Tensor>& inputs,
               std::vector<Tensor>& outputs, BackwardFn backward);
// Single-output convenience: records and returns `output`.
Tensor record_op(const std::string& name, const std::vector<Tensor>& inputs, Tensor output,
                 BackwardFn backward);

}  // namespace tessera
