// Module: a tree of parameters, buffers and child modules with stable dotted names
// ("layers.3.attention.qkv.weight"), in registration order. Names are the contract for
// checkpoints and export: renaming a member renames the checkpoint key.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace tessera {

// Ordered (name, tensor) pairs: parameters and buffers, in registration order.
using StateDict = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }

  void train(bool training = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Parameters then buffers, each with its dotted name; tensors are shared, not copied.
  StateDict state_dict() const;
  // Copies values in (converting dtype/device). strict: every key must match both ways.
  // Errors list the missing and unexpected keys and any shape mismatch by name.
  void load_state_dict(const StateDict& state, bool strict = true);
  void zero_grad();

 protected:
  Tensor register_parameter(std::string name, Tensor value, bool requires_grad = true);
  Tensor register_buffer(std::string name, Tensor value);
  template <typename M>
  std::shared_ptr<M> register_module(std::string name, std::shared_ptr<M> child) {
    add_child(std::move(name), child);
    return child;
  }

 private:
  void add_child(std::string name, std::shared_ptr<Module> child);
  void check_new_name(const std::string& name) const;
  template <typename Visit>
  void walk(const std::string& prefix, bool buffers, Visit&& visit) const;

  std::vector<std::pair<std::string, Tensor>> parameters_;
  std::vector<std::pair<std::string, Tensor>> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// Children named "0", "1", ... (transformer layers: "layers.3.").
class ModuleList : public Module {
 public:
  template <typename M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> child) {
    std::shared_ptr<M> added = register_module(std::to_string(modules_.size()), std::move(child));
    modules_.push_back(added);
    return added;
  }
  size_t size() const { return modules_.size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const { return modules_.at(i); }
  auto begin() const { return modules_.begin(); }
  auto end() const { return modules_.end(); }

 private:
  std::vector<std::shared_ptr<Module>> modules_;
};

}  // namespace tessera
