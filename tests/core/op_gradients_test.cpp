// Every differentiable op's backward against central finite differences in f64.
// One table entry per op: a name, input shapes (with a domain when the op needs one) and the
// function of those inputs. Adding an op to the test is adding one line.
#include <gtest/gtest.h>

#include <cmath>

#include "core/autograd/checkpoint.h"
#include "core/ops/ops.h"
#include "support/gradcheck.h"

namespace tessera {
namespace {

enum class Domain { Any, Positive, AwayFromZero };

struct InputSpec {
  Shape shape;
  Domain domain = Domain::Any;
};

struct OpCase {
  std::string name;
  std::vector<InputSpec> inputs;
  testing::TensorFn fn;
};

Tensor make_input(const InputSpec& spec, Generator& generator) {
  Tensor x = randn(spec.shape, generator, DType::F64);
  if (spec.domain == Domain::Positive) x = affine(abs(x), 1.0, 0.5);
  if (spec.domain == Domain::AwayFromZero) {
    std::vector<double> v = x.to_vector<double>();
    for (double& e : v) e = e >= 0 ? e + 0.2 : e - 0.2;  // keep |x| >= 0.2 so x +- eps never crosses the kink
    x = Tensor::from_vector(v, spec.shape);
  }
  return x.set_requires_grad(true);
}

Tensor ids(const std::vector<int64_t>& values, const Shape& shape) { return Tensor::from_vector(values, shape); }

std::vector<OpCase> op_cases() {
  using V = const std::vector<Tensor>&;
  return {
      // elementwise, with broadcasting
      {"add_broadcast", {{{2, 3, 4}}, {{3, 1}}}, [](V x) { return add(x[0], x[1]); }},
      {"sub_broadcast", {{{3, 4}}, {{4}}}, [](V x) { return sub(x[0], x[1]); }},
      {"mul_broadcast", {{{2, 1, 3}}, {{4, 1}}}, [](V x) { return mul(x[0], x[1]); }},
      {"div_broadcast", {{{3, 4}}, {{4}, Domain::Positive}}, [](V x) { return div(x[0], x[1]); }},
      {"neg", {{{5}}}, [](V x) { return neg(x[0]); }},
      {"exp", {{{5}}}, [](V x) { return exp(x[0]); }},
      {"log", {{{5}, Domain::Positive}}, [](V x) { return log(x[0]); }},
      {"sqrt", {{{5}, Domain::Positive}}, [](V x) { return sqrt(x[0]); }},
      {"rsqrt", {{{5}, Domain::Positive}}, [](V x) { return rsqrt(x[0]); }},
      {"abs", {{{6}, Domain::AwayFromZero}}, [](V x) { return abs(x[0]); }},
      {"square", {{{5}}}, [](V x) { return square(x[0]); }},
      {"relu", {{{6}, Domain::AwayFromZero}}, [](V x) { return relu(x[0]); }},
      {"gelu", {{{3, 4}}}, [](V x) { return gelu(x[0]); }},
      {"silu", {{{3, 4}}}, [](V x) { return silu(x[0]); }},
      {"tanh", {{{3, 4}}}, [](V x) { return tanh(x[0]); }},
      {"sigmoid", {{{3, 4}}}, [](V x) { return sigmoid(x[0]); }},
      {"pow", {{{5}, Domain::Positive}}, [](V x) { return pow(x[0], 2.5); }},
      {"scale", {{{2, 3}}}, [](V x) { return scale(x[0], -1.7); }},
      {"affine", {{{2, 3}}}, [](V x) { return affine(x[0], 0.3, 2.0); }},
      {"swiglu", {{{2, 6}}, {{2, 6}}}, [](V x) { return swiglu(x[0], x[1]); }},
      // reductions
      {"sum_all", {{{2, 3, 4}}}, [](V x) { return sum(x[0]); }},
      {"sum_dims_keepdim", {{{2, 3, 4}}}, [](V x) { return sum(x[0], {0, 2}, true); }},
      {"mean_dim", {{{2, 3, 4}}}, [](V x) { return mean(x[0], {-1}); }},
      // matrix products
      {"matmul_2d", {{{3, 4}}, {{4, 5}}}, [](V x) { return matmul(x[0], x[1]); }},
      {"matmul_nd_by_2d", {{{2, 3, 4}}, {{4, 2}}}, [](V x) { return matmul(x[0], x[1]); }},
      {"matmul_batched_broadcast", {{{2, 1, 3, 4}}, {{3, 4, 2}}}, [](V x) { return matmul(x[0], x[1]); }},
      {"linear_bias", {{{2, 3, 4}}, {{5, 4}}, {{5}}}, [](V x) { return linear(x[0], x[1], x[2]); }},
      {"linear_no_bias", {{{3, 4}}, {{2, 4}}}, [](V x) { return linear(x[0], x[1]); }},
      // neural-network ops
      {"embedding_repeated_ids", {{{5, 3}}}, [](V x) { return embedding(x[0], ids({1, 4, 1, 0, 4, 4}, {2, 3})); }},
      {"layer_norm", {{{3, 5}}, {{5}}, {{5}}}, [](V x) { return layer_norm(x[0], x[1], x[2]); }},
      {"layer_norm_no_bias", {{{2, 2, 6}}, {{6}}}, [](V x) { return layer_norm(x[0], x[1], Tensor()); }},
      {"rms_norm", {{{3, 5}}, {{5}}}, [](V x) { return rms_norm(x[0], x[1]); }},
      {"add_layer_norm_both_outputs", {{{2, 3, 5}}, {{2, 3, 5}}, {{5}}, {{5}}}, [](V x) {
         auto [y, h] = add_layer_norm(x[0], x[1], x[2], x[3]);
         return add(y, scale(h, 0.5));  // gradient reaches x and residual through both outputs
       }},
      {"add_rms_norm_both_outputs", {{{3, 4}}, {{3, 4}}, {{4}}}, [](V x) {
         auto [y, h] = add_rms_norm(x[0], x[1], x[2]);
         return mul(y, h);
       }},
      {"add_layer_norm_unused_residual_out", {{{2, 6}}, {{2, 6}}, {{6}}, {{6}}},
       [](V x) { return add_layer_norm(x[0], x[1], x[2], x[3]).first; }},
      {"softmax", {{{3, 5}}}, [](V x) { return softmax(x[0]); }},
      {"linear_of_gelu", {{{2, 3, 4}}, {{5, 4}}, {{5}}}, [](V x) { return linear_of_gelu(x[0], x[1], x[2]); }},
      {"linear_of_gelu_no_bias", {{{3, 4}}, {{2, 4}}}, [](V x) { return linear_of_gelu(x[0], x[1]); }},
      {"packed_qkv_attention", {{{2, 4, 2, 3, 4}}}, [](V x) { return packed_qkv_attention(x[0]); }},
      {"linear_of_swiglu", {{{2, 3, 8}}, {{5, 4}}, {{5}}}, [](V x) { return linear_of_swiglu(x[0], x[1], x[2]); }},
      {"linear_and_gelu", {{{2, 3, 4}}, {{5, 4}}, {{5}}}, [](V x) { return linear_and_gelu(x[0], x[1], x[2]).pre_activation; }},
      {"cross_entropy_mean_ignore_mask", {{{2, 3, 7}}}, [](V x) {
         CrossEntropyOptions options;
         options.ignore_index = -1;
         options.loss_mask = Tensor::from_vector(std::vector<double>{1, 1, 0, 1, 0.5, 1}, {2, 3});
         return cross_entropy(x[0], ids({3, -1, 2, 6, 0, 1}, {2, 3}), options);
       }},
      {"cross_entropy_sum", {{{4, 5}}}, [](V x) {
         CrossEntropyOptions options;
         options.reduction = LossReduction::Sum;
         return cross_entropy(x[0], ids({0, 4, 2, 2}, {4}), options);
       }},
      {"cross_entropy_none", {{{4, 5}}}, [](V x) {
         CrossEntropyOptions options;
         options.reduction = LossReduction::None;
         return cross_entropy(x[0], ids({1, 3, 0, 2}, {4}), options);
       }},
      // Logits nobody else holds: the backward writes the gradient over them.
      {"cross_entropy_sum_mask_over_computed_logits", {{{4, 3}}, {{3, 5}}}, [](V x) {
         CrossEntropyOptions options;
         options.reduction = LossReduction::Sum;
         options.ignore_index = -1;
         options.loss_mask = Tensor::from_vector(std::vector<double>{1, 0.25, 1, 0}, {4});
         return cross_entropy(matmul(x[0], x[1]), ids({1, -1, 4, 0}, {4}), options);
       }},
      {"dropout", {{{4, 6}}}, [](V x) {
         Generator generator(7);  // same seed every call: the same mask in every evaluation
         return dropout(x[0], 0.3, generator);
       }},
      {"attention_causal_gqa", {{{2, 4, 4, 3}}, {{2, 4, 2, 3}}, {{2, 4, 2, 3}}},
       [](V x) { return scaled_dot_product_attention(x[0], x[1], x[2], true); }},
      {"attention_full_mha", {{{1, 3, 2, 4}}, {{1, 3, 2, 4}}, {{1, 3, 2, 4}}},
       [](V x) { return scaled_dot_product_attention(x[0], x[1], x[2], false, 0.7); }},
      // Fewer queries than keys: the last 2 of 5 positions (decoding after 3 cached tokens).
      {"attention_causal_gqa_fewer_queries", {{{2, 2, 4, 3}}, {{2, 5, 2, 3}}, {{2, 5, 2, 3}}},
       [](V x) { return scaled_dot_product_attention(x[0], x[1], x[2], true); }},
      {"rope", {{{2, 3, 2, 4}}}, [](V x) {
         auto [cos, sin] = rope_tables(3, 4, 10000.0, {}, DType::F64);
         return rope(x[0], cos, sin);
       }},
      {"rope_from_position_4", {{{2, 3, 2, 4}}}, [](V x) {
         auto [cos, sin] = rope_tables(7, 4, 10000.0, {}, DType::F64);
         return rope(x[0], cos.narrow(0, 4, 3), sin.narrow(0, 4, 3));
       }},
      {"rope_llama3_scaling", {{{1, 5, 1, 8}}}, [](V x) {
         auto [cos, sin] = rope_tables(5, 8, 500000.0, {.factor = 8.0, .original_max_position = 16}, DType::F64);
         return rope(x[0], cos, sin);
       }},
      // joining and cutting
      {"cat", {{{2, 3}}, {{2, 1}}, {{2, 2}}}, [](V x) { return cat({x[0], x[1], x[2]}, 1); }},
      {"split_uses_two_of_three", {{{5, 2}}}, [](V x) {
         auto parts = split(x[0], {1, 3, 1}, 0);
         return add(parts[0], scale(parts[2], 2.0));
       }},
      {"chunk", {{{2, 6}}}, [](V x) { return mul(chunk(x[0], 3, 1)[1], chunk(x[0], 3, 1)[2]); }},
      {"stack", {{{2, 3}}, {{2, 3}}}, [](V x) { return stack({x[0], x[1]}, 1); }},
      // views and copies
      {"view_reshape", {{{2, 6}}}, [](V x) { return x[0].view({3, 4}).reshape({4, 3}); }},
      {"reshape_non_contiguous", {{{3, 4}}}, [](V x) { return x[0].transpose(0, 1).reshape({-1}); }},
      {"permute", {{{2, 3, 4}}}, [](V x) { return square(x[0].permute({2, 0, 1})); }},
      {"narrow", {{{4, 5}}}, [](V x) { return x[0].narrow(1, 1, 3); }},
      {"expand", {{{3, 1}}}, [](V x) { return x[0].expand({2, 3, 4}); }},
      {"squeeze_unsqueeze_flatten", {{{2, 1, 3}}}, [](V x) { return x[0].squeeze(1).unsqueeze(0).flatten(); }},
      {"clone_contiguous", {{{3, 2}}}, [](V x) { return x[0].transpose(0, 1).contiguous().clone(); }},
      // recomputation as an op
      {"checkpoint_region", {{{2, 4}}, {{3, 4}}}, [](V x) {
         return checkpoint([](const std::vector<Tensor>& in) { return std::vector<Tensor>{gelu(linear(in[0], in[1]))}; },
                           {x[0], x[1]})[0];
       }},
  };
}

// gtest prints parameters in test listings; show the op's name instead of raw bytes.
void PrintTo(const OpCase& op, std::ostream* os) { *os << op.name; }

class OpGradient : public ::testing::TestWithParam<OpCase> {};

TEST_P(OpGradient, MatchesCentralFiniteDifferencesInF64) {
  const OpCase& op = GetParam();
  Generator generator(2024);
  std::vector<Tensor> inputs;
  for (const InputSpec& spec : op.inputs) inputs.push_back(make_input(spec, generator));
  testing::GradcheckResult result = testing::gradcheck(op.fn, inputs);
  std::printf("gradcheck %-32s max relative error %.2e\n", op.name.c_str(), result.max_relative_error);
  EXPECT_GT(result.max_abs_gradient, 0.0) << "a zero gradient checks nothing";
  EXPECT_LE(result.max_relative_error, 1e-6) << op.name;
}

// Cross-entropy's backward writes over logits only it holds; a pass that keeps the graph
// must leave them for the next pass: two passes give twice one pass's gradients.
double max_abs_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  EXPECT_EQ(x.size(), y.size());
  double worst = x.size() == y.size() ? 0.0 : INFINITY;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
  return worst;
}

// One GEMM gives linear's output and its GELU (the epilogue's pre-activation output and result).
TEST(LinearAndGelu, EqualsLinearThenGelu) {
  Generator generator(9);
  Tensor x = randn({2, 3, 4}, generator, DType::F64), w = randn({5, 4}, generator, DType::F64),
         b = randn({5}, generator, DType::F64), w2 = randn({3, 5}, generator, DType::F64);
  for (const Tensor& bias : {b, Tensor()}) {
    LinearAndGelu got = linear_and_gelu(x, w, bias);
    Tensor want = linear(x, w, bias);
    EXPECT_LE(max_abs_diff(got.pre_activation, want), 1e-12);
    EXPECT_LE(max_abs_diff(got.activation, gelu(want)), 1e-12);
    // Handed to linear_of_gelu, the activation stands in for its own GELU pass.
    EXPECT_LE(max_abs_diff(linear_of_gelu(want, w2, {}, got.activation), linear_of_gelu(want, w2)), 1e-12);
  }
}

// The packed SwiGLU product equals the split-then-swiglu composition it replaces.
TEST(LinearOfSwiglu, EqualsSplitSwigluThenLinear) {
  Generator generator(10);
  Tensor x = randn({2, 3, 8}, generator, DType::F64), w = randn({5, 4}, generator, DType::F64),
         b = randn({5}, generator, DType::F64);
  std::vector<Tensor> gate_up = split(x, {4, 4}, -1);
  EXPECT_LE(max_abs_diff(linear_of_swiglu(x, w, b), linear(swiglu(gate_up[0], gate_up[1]), w, b)), 1e-12);
  EXPECT_THROW(linear_of_swiglu(x, randn({5, 8}, generator, DType::F64)), Error);  // x must be 2 x 8 wide
}

TEST(CrossEntropyBackward, RetainedGraphGivesTheSameGradientTwice) {
  Generator generator(5);
  Tensor x = randn({4, 3}, generator, DType::F64);
  x.set_requires_grad(true);
  Tensor w = randn({3, 6}, generator, DType::F64);
  CrossEntropyOptions options;
  options.reduction = LossReduction::Sum;
  Tensor loss = cross_entropy(matmul(x, w), ids({1, 5, 0, 2}, {4}), options);
  loss.backward({}, /*retain_graph=*/true);
  std::vector<double> once = x.grad().to_vector<double>();
  loss.backward();
  std::vector<double> twice = x.grad().to_vector<double>();
  for (size_t i = 0; i < once.size(); ++i) EXPECT_NEAR(twice[i], 2.0 * once[i], 1e-12) << i;
}

INSTANTIATE_TEST_SUITE_P(AllOps, OpGradient, ::testing::ValuesIn(op_cases()),
                         [](const ::testing::TestParamInfo<OpCase>& info) { return info.param.name; });

}  // namespace
}  // namespace tessera
