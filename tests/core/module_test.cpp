// Tests of Module (core/nn/module.h): dotted names in registration order, parameters before
// buffers in the state dict, load_state_dict (copies, converts dtype, strict and non-strict
// errors that list every problem by name), member-name validation, train/eval propagation
// and zero_grad in place. The test modules are defined here; expected names and values are
// written out by hand.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/nn/module.h"
#include "core/ops/ops.h"

namespace tessera {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::Not;

Tensor filled(const Shape& shape, float start) {
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = start + static_cast<float>(i);
  return Tensor::from_vector(v, shape);
}

// weight [out, in], bias [out].
class Affine : public Module {
 public:
  Affine(int64_t in, int64_t out, float start) {
    weight_ = register_parameter("weight", filled({out, in}, start));
    bias_ = register_parameter("bias", filled({out}, start + 100.0f));
  }
  Tensor weight_, bias_;
};

// weight [C] and a running-statistics buffer [C].
class Norm : public Module {
 public:
  explicit Norm(int64_t c) {
    weight_ = register_parameter("weight", Tensor::ones({c}));
    running_mean_ = register_buffer("running_mean", Tensor::zeros({c}));
  }
  Tensor weight_, running_mean_;
};

// layers.{0,1}.{weight,bias}, norm.weight, buffers step and norm.running_mean. The own buffer
// is registered last, after the children, yet comes first among buffers (own members first).
class Net : public Module {
 public:
  Net() {
    layers_ = register_module("layers", std::make_shared<ModuleList>());
    layers_->push_back(std::make_shared<Affine>(2, 3, 1.0f));
    layers_->push_back(std::make_shared<Affine>(3, 3, 10.0f));
    norm_ = register_module("norm", std::make_shared<Norm>(3));
    step_ = register_buffer("step", Tensor::zeros({1}));
  }
  std::shared_ptr<ModuleList> layers_;
  std::shared_ptr<Norm> norm_;
  Tensor step_;
};

// Exposes the protected registration calls so tests can try bad names.
class Open : public Module {
 public:
  using Module::register_buffer;
  using Module::register_module;
  using Module::register_parameter;
};

template <typename T>
std::vector<std::string> names(const std::vector<std::pair<std::string, T>>& entries) {
  std::vector<std::string> out;
  for (const auto& [name, t] : entries) out.push_back(name);
  return out;
}

const std::vector<std::string> kParameterNames = {"layers.0.weight", "layers.0.bias", "layers.1.weight",
                                                  "layers.1.bias", "norm.weight"};
const std::vector<std::string> kBufferNames = {"step", "norm.running_mean"};

// A state dict with the net's names and shapes whose values are 1000 + i in dtype `dtype`.
StateDict fresh_state(const Net& net, DType dtype) {
  StateDict state;
  float start = 1000.0f;
  for (const auto& [name, t] : net.state_dict()) {
    state.emplace_back(name, filled(t.shape(), start).to(dtype));
    start += 100.0f;
  }
  return state;
}

TEST(Module, DottedNamesInRegistrationOrder) {
  Net net;
  EXPECT_THAT(names(net.named_parameters()), ElementsAreArray(kParameterNames));
  EXPECT_THAT(names(net.named_buffers()), ElementsAreArray(kBufferNames));
  EXPECT_THAT(names(net.named_children()), ElementsAre("layers", "norm"));
  EXPECT_THAT(names(net.layers_->named_parameters()), ElementsAre("0.weight", "0.bias", "1.weight", "1.bias"));
  // parameters() is the same list, same tensors.
  std::vector<Tensor> params = net.parameters();
  auto named = net.named_parameters();
  ASSERT_EQ(params.size(), named.size());
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(params[i].is_same(named[i].second)) << named[i].first;
  EXPECT_TRUE(named[3].second.is_same(std::static_pointer_cast<Affine>((*net.layers_)[1])->bias_));
  for (const Tensor& p : params) EXPECT_TRUE(p.requires_grad());
  for (const auto& [name, b] : net.named_buffers()) EXPECT_FALSE(b.requires_grad()) << name;
}

TEST(Module, StateDictIsParametersThenBuffersAndShares) {
  Net net;
  StateDict state = net.state_dict();
  std::vector<std::string> expected = kParameterNames;
  expected.insert(expected.end(), kBufferNames.begin(), kBufferNames.end());
  EXPECT_THAT(names(state), ElementsAreArray(expected));
  // Shared, not copied: writing through the state dict's tensor changes the module.
  EXPECT_EQ(state[0].second.data_ptr(), net.named_parameters()[0].second.data_ptr());
  ASSERT_EQ(state[5].first, "step");
  state[5].second.fill_(5.0);
  EXPECT_EQ(net.step_.item(), 5.0);
}

TEST(Module, LoadStateDictCopiesValuesAndConvertsDtype) {
  for (DType dtype : {DType::F32, DType::F64, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    Net net;
    std::vector<void*> pointers_before;
    for (const auto& [name, t] : net.state_dict()) pointers_before.push_back(t.data_ptr());
    StateDict state = fresh_state(net, dtype);
    net.load_state_dict(state);
    StateDict loaded = net.state_dict();
    ASSERT_EQ(loaded.size(), state.size());
    for (size_t i = 0; i < loaded.size(); ++i) {
      const auto& [name, t] = loaded[i];
      EXPECT_EQ(t.dtype(), DType::F32) << name << " keeps the module's dtype";
      EXPECT_EQ(t.data_ptr(), pointers_before[i]) << name << " is copied into, not replaced";
      EXPECT_FALSE(t.storage() == state[i].second.storage()) << name << " must not alias the checkpoint";
      // bf16 cannot hold 1001 exactly: compare with the checkpoint's own (exact) widening.
      EXPECT_EQ(t.to_vector<double>(), state[i].second.to_vector<double>()) << name;
    }
    EXPECT_TRUE(net.norm_->weight_.requires_grad()) << "loading keeps parameters trainable";
    // Later writes to the checkpoint do not reach the module.
    state[0].second.fill_(-1.0);
    EXPECT_NE(net.layers_->named_parameters()[0].second.to_vector<float>()[0], -1.0f);
  }
}

TEST(Module, StrictLoadListsEveryProblemAndChangesNothing) {
  Net net;
  StateDict good = fresh_state(net, DType::F32);
  StateDict bad;
  for (const auto& [name, t] : good) {
    if (name == "layers.1.bias" || name == "norm.running_mean") continue;  // missing
    if (name == "layers.0.weight") {
      bad.emplace_back(name, Tensor::zeros({2, 3}));  // transposed shape
      continue;
    }
    bad.emplace_back(name, t);
  }
  bad.emplace_back("layers.2.weight", Tensor::zeros({3, 3}));  // unexpected
  bad.emplace_back("head.bias", Tensor::zeros({3}));           // unexpected
  StateDict before;
  for (const auto& [name, t] : net.state_dict()) before.emplace_back(name, t.clone());
  try {
    net.load_state_dict(bad);
    FAIL() << "strict load of a mismatched state dict did not throw";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_THAT(m, HasSubstr("load_state_dict"));
    EXPECT_THAT(m, HasSubstr("missing key: layers.1.bias"));
    EXPECT_THAT(m, HasSubstr("missing key: norm.running_mean"));
    EXPECT_THAT(m, HasSubstr("unexpected key: layers.2.weight"));
    EXPECT_THAT(m, HasSubstr("unexpected key: head.bias"));
    EXPECT_THAT(m, HasSubstr("shape mismatch for layers.0.weight"));
    EXPECT_THAT(m, HasSubstr("[2, 3]"));
    EXPECT_THAT(m, HasSubstr("[3, 2]"));
    EXPECT_THAT(m, Not(HasSubstr("missing key: layers.0.bias")));
    EXPECT_THAT(m, Not(HasSubstr("shape mismatch for layers.0.bias")));
  }
  // All or nothing: the keys that did match were not loaded either.
  StateDict after = net.state_dict();
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].second.to_vector<float>(), before[i].second.to_vector<float>()) << after[i].first;
  }
}

TEST(Module, NonStrictLoadIgnoresExtraAndMissingKeys) {
  Net net;
  StateDict good = fresh_state(net, DType::F32);
  StateDict partial;
  for (const auto& [name, t] : good) {
    if (name == "layers.0.bias" || name == "norm.weight") partial.emplace_back(name, t);
  }
  partial.emplace_back("lm_head.weight", Tensor::zeros({7, 3}));
  net.load_state_dict(partial, /*strict=*/false);
  for (const auto& [name, t] : net.state_dict()) {
    if (name == "layers.0.bias") {
      EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1100, 1101, 1102}));
    } else if (name == "norm.weight") {
      EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1400, 1401, 1402}));
    } else if (name == "layers.0.weight") {
      EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6})) << "untouched";
    }
  }
  // A shape mismatch on a key that does match is still an error.
  StateDict wrong_shape = {{"norm.weight", Tensor::zeros({4})}};
  try {
    net.load_state_dict(wrong_shape, /*strict=*/false);
    FAIL() << "non-strict load with a shape mismatch did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("shape mismatch for norm.weight"));
  }
}

TEST(Module, BadMemberNamesAreRejected) {
  struct Case {
    std::string what;
    std::function<void(Open&)> call;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"dotted parameter", [](Open& m) { m.register_parameter("a.b", Tensor::zeros({1})); }, "'a.b'"},
      {"empty parameter", [](Open& m) { m.register_parameter("", Tensor::zeros({1})); }, "invalid member name"},
      {"dotted buffer", [](Open& m) { m.register_buffer("x.y", Tensor::zeros({1})); }, "'x.y'"},
      {"dotted child", [](Open& m) { m.register_module("c.d", std::make_shared<Open>()); }, "'c.d'"},
      {"duplicate parameter", [](Open& m) { m.register_parameter("w", Tensor::zeros({1})); }, "'w' registered twice"},
      {"buffer named like a parameter", [](Open& m) { m.register_buffer("w", Tensor::zeros({1})); },
       "'w' registered twice"},
      {"child named like a buffer", [](Open& m) { m.register_module("buf", std::make_shared<Open>()); },
       "'buf' registered twice"},
      {"parameter named like a child", [](Open& m) { m.register_parameter("sub", Tensor::zeros({1})); },
       "'sub' registered twice"},
      {"null child", [](Open& m) { m.register_module("nothing", std::shared_ptr<Open>()); }, "null module"},
      {"non-leaf parameter",
       [](Open& m) {
         Tensor leaf = Tensor::ones({2}).set_requires_grad(true);
         m.register_parameter("derived", scale(leaf, 2.0));
       },
       "expected a defined leaf tensor"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Open m;
    m.register_parameter("w", Tensor::zeros({1}));
    m.register_buffer("buf", Tensor::zeros({1}));
    m.register_module("sub", std::make_shared<Open>());
    try {
      c.call(m);
      ADD_FAILURE() << c.what << " was accepted";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr(c.message));
    }
    EXPECT_THAT(names(m.state_dict()), ElementsAre("w", "buf")) << "a rejected member is not added";
  }
}

TEST(Module, TrainAndEvalPropagateToEveryDescendant) {
  Net net;
  auto all_modes = [&] {
    std::vector<bool> modes{net.is_training(), net.layers_->is_training(), net.norm_->is_training()};
    for (const auto& layer : *net.layers_) modes.push_back(layer->is_training());
    return modes;
  };
  EXPECT_THAT(all_modes(), ElementsAre(true, true, true, true, true));
  net.eval();
  EXPECT_THAT(all_modes(), ElementsAre(false, false, false, false, false));
  net.layers_->train();  // a subtree only
  EXPECT_THAT(all_modes(), ElementsAre(false, true, false, true, true));
  net.train();
  EXPECT_THAT(all_modes(), ElementsAre(true, true, true, true, true));
  net.train(false);
  EXPECT_THAT(all_modes(), ElementsAre(false, false, false, false, false));
}

TEST(Module, ZeroGradZeroesInPlace) {
  Net net;
  // Gradients from a real backward: d/dp sum(p * 3) = 3 everywhere.
  Tensor loss = Tensor::zeros({});
  for (const Tensor& p : net.parameters()) loss = add(loss, sum(scale(p, 3.0)));
  loss.backward();
  std::vector<void*> grad_pointers;
  std::vector<const Storage*> grad_storages;
  for (const auto& [name, p] : net.named_parameters()) {
    ASSERT_TRUE(p.grad().defined()) << name;
    for (float g : p.grad().to_vector<float>()) ASSERT_EQ(g, 3.0f) << name;
    grad_pointers.push_back(p.grad().data_ptr());
    grad_storages.push_back(p.grad().storage().get());
  }
  net.zero_grad();
  auto named = net.named_parameters();
  for (size_t i = 0; i < named.size(); ++i) {
    const auto& [name, p] = named[i];
    ASSERT_TRUE(p.grad().defined()) << name << ": zero_grad must keep the buffer";
    EXPECT_EQ(p.grad().data_ptr(), grad_pointers[i]) << name;
    EXPECT_EQ(p.grad().storage().get(), grad_storages[i]) << name;
    for (float g : p.grad().to_vector<float>()) EXPECT_EQ(g, 0.0f) << name;
  }
}

TEST(Module, ZeroGradKeepsInstalledBucketViews) {
  // Gradient buffers installed as views into one flat bucket (how DDP lays them out), with a
  // guard element between them that belongs to no parameter.
  Net net;
  auto params = net.named_parameters();
  int64_t total = 0;
  for (const auto& [name, p] : params) total += p.numel() + 1;
  Tensor bucket = Tensor::full({total}, 7.0);
  std::vector<int64_t> guards;
  int64_t at = 0;
  for (const auto& [name, p] : params) {
    p.set_grad(bucket.narrow(0, at, p.numel()).view(p.shape()));
    at += p.numel();
    guards.push_back(at++);
  }
  net.zero_grad();
  std::vector<float> values = bucket.to_vector<float>();
  at = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    for (int64_t j = 0; j < params[i].second.numel(); ++j) EXPECT_EQ(values[static_cast<size_t>(at + j)], 0.0f);
    at += params[i].second.numel();
    EXPECT_EQ(values[static_cast<size_t>(guards[i])], 7.0f) << "guard after " << params[i].first;
    ++at;
    EXPECT_EQ(params[i].second.grad().storage(), bucket.storage()) << params[i].first;
  }
}

TEST(Module, ZeroGradLeavesMissingGradsUndefined) {
  Net net;
  net.zero_grad();
  for (const auto& [name, p] : net.named_parameters()) EXPECT_FALSE(p.grad().defined()) << name;
}

}  // namespace
}  // namespace tessera
