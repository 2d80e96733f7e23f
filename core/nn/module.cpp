#include "core/nn/module.h"

#include <set>
#include <sstream>

#include "core/autograd/grad_mode.h"

namespace tessera {

template <typename Visit>
void Module::walk(const std::string& prefix, bool buffers, Visit&& visit) const {
  for (const auto& [name, tensor] : buffers ? buffers_ : parameters_) visit(prefix + name, tensor);
  for (const auto& [name, child] : children_) child->walk(prefix + name + ".", buffers, visit);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  walk("", false, [&](const std::string& name, const Tensor& t) { out.emplace_back(name, t); });
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  walk("", false, [&](const std::string&, const Tensor& t) { out.push_back(t); });
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers() const {
  std::vector<std::pair<std::string, Tensor>> out;
  walk("", true, [&](const std::string& name, const Tensor& t) { out.emplace_back(name, t); });
  return out;
}

void Module::train(bool training) {
  training_ = training;
  for (auto& [name, child] : children_) child->train(training);
}

StateDict Module::state_dict() const {
  StateDict state = named_parameters();
  for (auto& entry : named_buffers()) state.push_back(std::move(entry));
  return state;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  StateDict own = state_dict();
  std::set<std::string> own_names, given_names;
  for (const auto& [name, t] : own) own_names.insert(name);
  for (const auto& [name, t] : state) given_names.insert(name);
  std::ostringstream problems;
  if (strict) {
    for (const auto& name : own_names)
      if (!given_names.count(name)) problems << "\n  missing key: " << name;
    for (const auto& name : given_names)
      if (!own_names.count(name)) problems << "\n  unexpected key: " << name;
  }
  for (const auto& [name, target] : own) {
    for (const auto& [given_name, value] : state) {
      if (given_name == name && value.shape() != target.shape())
        problems << "\n  shape mismatch for " << name << ": checkpoint " << value.shape() << ", model "
                 << target.shape();
    }
  }
  TS_CHECK(problems.str().empty(), "load_state_dict: the state does not match the module:", problems.str());
  NoGradGuard no_grad;
  for (auto& [name, target] : own) {
    for (const auto& [given_name, value] : state) {
      if (given_name == name) target.copy_(value);
    }
  }
}

void Module::zero_grad() {
  // Zeroes in place rather than dropping the buffers: gradient buffers installed by the
  // parallel layer (views into a flat DDP/ZeRO bucket) must stay where they are.
  NoGradGuard no_grad;
  for (const Tensor& p : parameters()) {
    Tensor grad = p.grad();
    if (grad.defined()) grad.zero_();
  }
}

void Module::check_new_name(const std::string& name) const {
  TS_CHECK(!name.empty() && name.find('.') == std::string::npos, "Module: invalid member name '", name,
           "' (non-empty, no dots)");
  auto taken = [&](const auto& list) {
    for (const auto& entry : list)
      if (entry.first == name) return true;
    return false;
  };
  TS_CHECK(!taken(parameters_) && !taken(buffers_) && !taken(children_), "Module: name '", name,
           "' registered twice");
}

Tensor Module::register_parameter(std::string name, Tensor value, bool requires_grad) {
  check_new_name(name);
  TS_CHECK(value.defined() && value.is_leaf(), "register_parameter '", name, "': expected a defined leaf tensor");
  value.set_requires_grad(requires_grad);
  parameters_.emplace_back(std::move(name), value);
  return value;
}

Tensor Module::register_buffer(std::string name, Tensor value) {
  check_new_name(name);
  buffers_.emplace_back(std::move(name), value);
  return value;
}

void Module::add_child(std::string name, std::shared_ptr<Module> child) {
  check_new_name(name);
  TS_CHECK(child != nullptr, "register_module '", name, "': null module");
  children_.emplace_back(std::move(name), std::move(child));
}

}  // namespace tessera
