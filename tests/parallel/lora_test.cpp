// LoRA adapters on single-rank Column/RowParallelLinear layers (parallel/lora.h), in f64:
// the adapted output against the closed form x W^T + b + (alpha / rank) x A^T B^T computed
// from the factors with plain matmuls; gradients of the input, A and B against central finite
// differences, none for the frozen base; a fresh adapter (B = 0) and a disabled one give the
// base layer's output bit for bit; merge() writes W + scale B A and the merged layer gives
// the unmerged output, unmerge() restores W; dropout only in training; bad options rejected.
// The tensor-parallel splits are checked against these layers in tests/mpi/lora_tensor_parallel_test.cpp.
#include "parallel/lora.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "core/autograd/grad_mode.h"
#include "core/check.h"
#include "core/ops/ops.h"
#include "core/ops/random_ops.h"
#include "parallel/tensor_parallel_linear.h"
#include "support/gradcheck.h"

namespace tessera {
namespace {

constexpr int64_t kIn = 6, kOut = 5, kRank = 3;
constexpr double kAlpha = 6.0;  // scale 2
const ParamOptions kF64{.dtype = DType::F64};

Tensor random(const Shape& shape, uint64_t seed) {
  Generator generator(seed);
  Tensor t = Tensor::empty(shape, DType::F64);
  return uniform_(t, generator, -1.0, 1.0);
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double diff = 0;
  for (size_t i = 0; i < x.size(); ++i) diff = std::max(diff, std::abs(x[i] - y[i]));
  return diff;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.to_vector<double>() == b.to_vector<double>();
}

// B starts at zero; tests give it values so that the adapter's term is not trivially zero.
void randomize_b(LoraAdapter& adapter, uint64_t seed) {
  NoGradGuard no_grad;
  Tensor(adapter.b()).copy_(random(adapter.b().shape(), seed));
}

void freeze(const Tensor& weight, const Tensor& bias) {
  Tensor(weight).set_requires_grad(false);
  if (bias.defined()) Tensor(bias).set_requires_grad(false);
}

struct Layers {
  std::shared_ptr<ColumnParallelLinear> column;
  std::shared_ptr<RowParallelLinear> row;
};

Layers adapted_layers(double dropout = 0.0, Generator* dropout_generator = nullptr) {
  Generator init(11), lora_init(12);
  Layers layers{std::make_shared<ColumnParallelLinear>(kIn, kOut, nullptr, init, ColumnParallelOptions{.param = kF64}),
                std::make_shared<RowParallelLinear>(kIn, kOut, nullptr, init, RowParallelOptions{.param = kF64})};
  const LoraAdapterOptions options{.rank = kRank, .alpha = kAlpha, .dropout = dropout};
  layers.column->attach_lora(lora_init, dropout_generator, options);
  layers.row->attach_lora(lora_init, dropout_generator, options);
  freeze(layers.column->weight(), layers.column->bias());
  freeze(layers.row->weight(), layers.row->bias());
  randomize_b(*layers.column->lora(), 21);
  randomize_b(*layers.row->lora(), 22);
  return layers;
}

// x W^T + b + scale x A^T B^T, from plain matmuls (on g(x) for the row layer's GELU variant).
Tensor closed_form(const Tensor& x, const Tensor& weight, const Tensor& bias, const LoraAdapter& adapter) {
  NoGradGuard no_grad;
  Tensor base = add(matmul(x, weight.transpose(0, 1)), bias);
  return add(base, matmul(matmul(x, adapter.a().transpose(0, 1)), adapter.b().transpose(0, 1)) * adapter.scale());
}

TEST(Lora, AdaptedOutputsFollowTheClosedForm) {
  Layers layers = adapted_layers();
  Tensor x = random({2, 4, kIn}, 1);
  EXPECT_LT(max_abs_diff(layers.column->forward(x),
                         closed_form(x, layers.column->weight(), layers.column->bias(), *layers.column->lora())),
            1e-13);
  EXPECT_LT(max_abs_diff(layers.row->forward(x),
                         closed_form(x, layers.row->weight(), layers.row->bias(), *layers.row->lora())),
            1e-13);
  EXPECT_LT(max_abs_diff(layers.row->forward_of_gelu(x),
                         closed_form(gelu(x), layers.row->weight(), layers.row->bias(), *layers.row->lora())),
            1e-13);
  EXPECT_DOUBLE_EQ(layers.column->lora()->scale(), kAlpha / kRank);
  EXPECT_EQ(layers.column->lora()->a().shape(), (Shape{kRank, kIn}));
  EXPECT_EQ(layers.column->lora()->b().shape(), (Shape{kOut, kRank}));
}

// Checks x, A and B against finite differences and that the frozen base got no gradient.
void expect_gradients_pass(const std::function<Tensor(const Tensor&)>& forward, const LoraAdapter& adapter,
                           const Tensor& weight, const Tensor& bias) {
  Tensor x = random({2, 3, kIn}, 2).set_requires_grad(true);
  testing::GradcheckResult result =
      testing::gradcheck([&](const std::vector<Tensor>& in) { return forward(in[0]); }, {x, adapter.a(), adapter.b()});
  EXPECT_LT(result.max_relative_error, 1e-7);
  EXPECT_GT(result.max_abs_gradient, 0.0);
  EXPECT_TRUE(adapter.a().grad().defined());
  EXPECT_TRUE(adapter.b().grad().defined());
  EXPECT_FALSE(weight.grad().defined());
  EXPECT_FALSE(bias.grad().defined());
}

TEST(Lora, ColumnGradientsPassFiniteDifferencesAndTheBaseGetsNone) {
  Layers layers = adapted_layers();
  expect_gradients_pass([&](const Tensor& x) { return layers.column->forward(x); }, *layers.column->lora(),
                        layers.column->weight(), layers.column->bias());
}

TEST(Lora, RowGradientsPassFiniteDifferencesAndTheBaseGetsNone) {
  Layers layers = adapted_layers();
  expect_gradients_pass([&](const Tensor& x) { return layers.row->forward(x); }, *layers.row->lora(),
                        layers.row->weight(), layers.row->bias());
  expect_gradients_pass([&](const Tensor& x) { return layers.row->forward_of_gelu(x); }, *layers.row->lora(),
                        layers.row->weight(), layers.row->bias());
}

TEST(Lora, AFreshAdapterAndADisabledOneGiveTheBaseOutputBitForBit) {
  Generator init(11), lora_init(12);
  ColumnParallelLinear layer(kIn, kOut, nullptr, init, ColumnParallelOptions{.param = kF64});
  Tensor x = random({2, 4, kIn}, 3);
  NoGradGuard no_grad;
  Tensor base = layer.forward(x);
  LoraAdapter& adapter = layer.attach_lora(lora_init, nullptr, {.rank = kRank, .alpha = kAlpha});
  EXPECT_TRUE(bitwise_equal(layer.forward(x), base)) << "B starts at zero";
  randomize_b(adapter, 4);
  EXPECT_GT(max_abs_diff(layer.forward(x), base), 1e-3);
  adapter.set_enabled(false);
  EXPECT_TRUE(bitwise_equal(layer.forward(x), base));
  adapter.set_enabled(true);
  EXPECT_GT(max_abs_diff(layer.forward(x), base), 1e-3);
}

TEST(Lora, MergedEqualsUnmergedAndUnmergeRestoresTheWeight) {
  Layers layers = adapted_layers();
  Tensor x = random({2, 4, kIn}, 5);
  NoGradGuard no_grad;
  for (Module* module : {static_cast<Module*>(layers.column.get()), static_cast<Module*>(layers.row.get())}) {
    auto* column = dynamic_cast<ColumnParallelLinear*>(module);
    auto* row = dynamic_cast<RowParallelLinear*>(module);
    auto forward = [&] { return column ? column->forward(x) : row->forward(x); };
    LoraAdapter& adapter = column ? *column->lora() : *row->lora();
    const Tensor& weight = column ? column->weight() : row->weight();
    Tensor original = weight.clone();
    Tensor unmerged = forward();
    adapter.merge();
    EXPECT_TRUE(adapter.merged());
    EXPECT_LT(max_abs_diff(weight, add(original, matmul(adapter.b(), adapter.a()) * adapter.scale())), 1e-14);
    EXPECT_LT(max_abs_diff(forward(), unmerged), 1e-13);
    adapter.unmerge();
    EXPECT_LT(max_abs_diff(weight, original), 1e-14);
    EXPECT_LT(max_abs_diff(forward(), unmerged), 1e-13);
  }
}

TEST(Lora, DropoutActsInTrainingOnly) {
  Generator dropout_generator(99);
  Layers layers = adapted_layers(0.5, &dropout_generator);
  Layers plain = adapted_layers();  // same weights, no dropout
  Tensor x = random({4, 8, kIn}, 6);
  NoGradGuard no_grad;
  EXPECT_GT(max_abs_diff(layers.column->forward(x), plain.column->forward(x)), 1e-3);
  layers.column->eval();
  EXPECT_TRUE(bitwise_equal(layers.column->forward(x), plain.column->forward(x)));
}

TEST(Lora, BadOptionsAreRejected) {
  Generator init(1);
  ColumnParallelLinear layer(kIn, kOut, nullptr, init, ColumnParallelOptions{.param = kF64});
  auto expect_error = [](const auto& call, const std::string& reason) {
    try {
      call();
      ADD_FAILURE() << "expected an error containing '" << reason << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(reason), std::string::npos) << e.what();
    }
  };
  expect_error([&] { layer.attach_lora(init, nullptr, {.rank = 0}); }, "lora.rank must be positive");
  expect_error([&] { layer.attach_lora(init, nullptr, {.rank = 2, .dropout = 0.1}); }, "needs a dropout generator");
  LoraAdapter& adapter = layer.attach_lora(init, nullptr, {.rank = 2});
  expect_error([&] { layer.attach_lora(init, nullptr, {.rank = 2}); }, "attach_lora called twice");
  adapter.merge();
  expect_error([&] { adapter.set_enabled(false); }, "unmerge() first");
  expect_error([&] { adapter.merge(); }, "already merged");
}

}  // namespace
}  // namespace tessera
