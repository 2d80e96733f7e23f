// LoRA on the transformer (see lora.h).
#include "models/lora.h"

#include <algorithm>
#include <functional>
#include <set>
#include <sstream>
#include <string>

#include "core/autograd/grad_mode.h"
#include "core/check.h"
#include "parallel/tensor_parallel_linear.h"

namespace tessera {

namespace {

// Visits every module of the tree with its dotted prefix ("" for the root, else "a.b.").
void visit_modules(const Module& module, const std::string& prefix,
                   const std::function<void(const Module&, const std::string&)>& visit) {
  visit(module, prefix);
  for (const auto& [name, child] : module.named_children()) visit_modules(*child, prefix + name + ".", visit);
}

// The child module at dotted `path` ("self_attention.linear_qkv"), or null.
std::shared_ptr<Module> child_at(const Module& root, const std::string& path) {
  std::shared_ptr<Module> found;
  const Module* current = &root;
  size_t start = 0;
  while (current != nullptr && start <= path.size()) {
    const size_t dot = path.find('.', start);
    const std::string name = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    found = nullptr;
    for (const auto& [child_name, child] : current->named_children())
      if (child_name == name) found = child;
    current = found.get();
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return found;
}

// Where each target sits in a transformer layer, in draw order.
struct Target {
  const char* name;
  const char* path;
};
constexpr Target kTargets[kLoraDrawsPerLayer] = {{"linear_qkv", "self_attention.linear_qkv"},
                                                 {"linear_proj", "self_attention.linear_proj"},
                                                 {"linear_fc1", "mlp.linear_fc1"},
                                                 {"linear_fc2", "mlp.linear_fc2"}};

}  // namespace

std::vector<Tensor> attach_lora(Module& layer, int64_t layer_index, const LoraConfig& config, uint64_t seed,
                                RngTracker& rng, const ModelParallelism& parallel) {
  config.validate();
  TS_CHECK(config.enabled(), "attach_lora: lora.rank is 0 (LoRA off)");
  const LoraAdapterOptions options{.rank = config.rank, .alpha = config.alpha, .dropout = config.dropout};
  Generator* sharded_dropout = config.dropout > 0.0 && parallel.tp != nullptr ? &rng.fork() : nullptr;
  Generator* replicated_dropout = config.dropout > 0.0 ? &rng.default_generator() : nullptr;
  std::vector<Tensor> replicated;
  for (uint64_t k = 0; k < kLoraDrawsPerLayer; ++k) {
    const Target& target = kTargets[k];
    if (std::find(config.targets.begin(), config.targets.end(), target.name) == config.targets.end()) continue;
    Generator init(seed ^ kLoraSeedSalt);
    init.set_state({seed ^ kLoraSeedSalt, uint64_t(layer_index) * kLoraDrawsPerLayer + k});
    std::shared_ptr<Module> module = child_at(layer, target.path);
    LoraAdapter* adapter = nullptr;
    if (auto* column = dynamic_cast<ColumnParallelLinear*>(module.get())) {
      // A column layer's input is replicated over tp unless sequence parallelism shards it.
      adapter = &column->attach_lora(init, parallel.sequence_parallel ? sharded_dropout : replicated_dropout, options);
    } else if (auto* row = dynamic_cast<RowParallelLinear*>(module.get())) {
      adapter = &row->attach_lora(init, parallel.tp != nullptr ? sharded_dropout : replicated_dropout, options);
    }
    TS_CHECK(adapter != nullptr, "attach_lora: layer ", layer_index, " has no tensor-parallel linear at '", target.path,
             "' for lora target ", target.name);
    for (const Tensor& p : adapter->replicated_parameters()) replicated.push_back(p);
  }
  return replicated;
}

namespace {

void collect_adapters(const Module& module, std::vector<LoraAdapter*>& adapters) {
  for (const auto& [name, child] : module.named_children()) {
    if (auto* adapter = dynamic_cast<LoraAdapter*>(child.get())) adapters.push_back(adapter);
    collect_adapters(*child, adapters);
  }
}

}  // namespace

std::vector<LoraAdapter*> lora_adapters(const Module& model) {
  std::vector<LoraAdapter*> adapters;
  collect_adapters(model, adapters);
  return adapters;
}

namespace {

std::set<const TensorImpl*> adapter_parameter_set(const Module& model) {
  std::set<const TensorImpl*> set;
  for (const LoraAdapter* adapter : lora_adapters(model))
    for (const Tensor& p : adapter->parameters()) set.insert(p.impl());
  return set;
}

}  // namespace

void freeze_base_parameters(const Module& model) {
  const std::set<const TensorImpl*> adapters = adapter_parameter_set(model);
  for (Tensor p : model.parameters())
    if (!adapters.contains(p.impl())) p.set_requires_grad(false);
}

std::vector<Tensor> trainable_parameters(const Module& model) {
  std::vector<Tensor> trainable;
  for (const Tensor& p : model.parameters())
    if (p.requires_grad()) trainable.push_back(p);
  return trainable;
}

std::vector<bool> trainable_subset(const Module& model, const std::vector<bool>& flags) {
  const std::vector<Tensor> all = model.parameters();
  TS_CHECK(flags.size() == all.size(), "trainable_subset: ", flags.size(), " flags for ", all.size(),
           " parameters; pass a list aligned with parameters()");
  std::vector<bool> subset;
  for (size_t i = 0; i < all.size(); ++i)
    if (all[i].requires_grad()) subset.push_back(flags[i]);
  return subset;
}

StateDict lora_state_dict(const Module& model) {
  StateDict state;
  visit_modules(model, "", [&](const Module& module, const std::string& prefix) {
    if (dynamic_cast<const LoraAdapter*>(&module) == nullptr) return;
    for (auto& [name, p] : module.named_parameters()) state.emplace_back(prefix + name, p);
  });
  return state;
}

void load_lora_state_dict(const Module& model, const StateDict& state) {
  const StateDict own = lora_state_dict(model);
  std::ostringstream problems;
  std::set<std::string> own_names;
  for (const auto& [name, p] : own) {
    own_names.insert(name);
    const Tensor* given = nullptr;
    for (const auto& [given_name, value] : state)
      if (given_name == name) given = &value;
    if (given == nullptr) {
      problems << " missing " << name << ";";
    } else if (given->shape() != p.shape()) {
      problems << " " << name << " has shape " << given->shape() << ", the model's " << p.shape() << ";";
    }
  }
  for (const auto& [name, value] : state)
    if (!own_names.contains(name)) problems << " unexpected " << name << ";";
  TS_CHECK(problems.str().empty(),
           "load_lora_state_dict: the adapters do not match the model (same lora.rank, "
           "targets and tp size?):",
           problems.str());
  NoGradGuard no_grad;
  for (auto& [name, p] : own) {
    for (const auto& [given_name, value] : state)
      if (given_name == name) Tensor(p).copy_(value);
  }
}

void set_lora_enabled(const Module& model, bool enabled) {
  for (LoraAdapter* adapter : lora_adapters(model)) adapter->set_enabled(enabled);
}

LoraDisabledScope::LoraDisabledScope(const Module& model) : model_(model) { set_lora_enabled(model_, false); }

LoraDisabledScope::~LoraDisabledScope() { set_lora_enabled(model_, true); }

void merge_lora(const Module& model) {
  for (LoraAdapter* adapter : lora_adapters(model)) adapter->merge();
}

void unmerge_lora(const Module& model) {
  for (LoraAdapter* adapter : lora_adapters(model)) adapter->unmerge();
}

}  // namespace tessera
