// Edge cases of tensors in ops: zero-size dims, ops on non-contiguous and expanded (stride 0)
// inputs, gradients of views and of expand, dtype conversion, to_vector and item.
//
// What each test compares against: ops on views are compared with the same op on a contiguous
// copy (bit-exact: the kernels see the same numbers) and with a double-precision loop written
// here; conversions with values written out by hand.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "core/ops/ops.h"
#include "core/tensor.h"
#include "support/layout_helpers.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;
using namespace ::tessera::testing;

// ---- zero-size dims ----

TEST(ZeroSize, ElementwiseAndReductions) {
  Tensor empty = Tensor::zeros({0, 3});
  EXPECT_EQ(add(empty, empty).shape(), (Shape{0, 3}));
  EXPECT_EQ(add(empty, Tensor::ones({3})).shape(), (Shape{0, 3}));
  EXPECT_EQ(mul(Tensor::ones({2, 0}), Tensor::ones({2, 1})).shape(), (Shape{2, 0}));
  EXPECT_EQ(relu(empty).shape(), (Shape{0, 3}));
  EXPECT_EQ(scale(empty, 2.0).numel(), 0);

  EXPECT_EQ(sum(empty).shape(), (Shape{}));
  EXPECT_EQ(sum(empty).item(), 0.0) << "the sum of nothing is 0";
  EXPECT_EQ(sum(Tensor::full({2, 0, 3}, 1.0, DType::F64)).item(), 0.0);
  Tensor column_sums = sum(empty, {0});
  EXPECT_EQ(column_sums.shape(), (Shape{3}));
  EXPECT_EQ(column_sums.to_vector<float>(), (std::vector<float>{0, 0, 0}));
  Tensor kept = sum(Tensor::ones({2, 0}), {1}, /*keepdim=*/true);
  EXPECT_EQ(kept.shape(), (Shape{2, 1}));
  EXPECT_EQ(kept.to_vector<float>(), (std::vector<float>{0, 0}));
  EXPECT_EQ(sum(empty, {1}).shape(), (Shape{0}));
  EXPECT_THROW(mean(empty), Error) << "the mean of nothing is undefined";
}

TEST(ZeroSize, MatmulWithEmptyOuterDims) {
  Tensor m0 = matmul(Tensor::ones({0, 3}), Tensor::ones({3, 2}));
  EXPECT_EQ(m0.shape(), (Shape{0, 2}));
  Tensor n0 = matmul(Tensor::ones({2, 3}), Tensor::ones({3, 0}));
  EXPECT_EQ(n0.shape(), (Shape{2, 0}));
  Tensor b0 = matmul(Tensor::ones({0, 2, 3}), Tensor::ones({0, 3, 4}));
  EXPECT_EQ(b0.shape(), (Shape{0, 2, 4}));
}

// A product over an empty inner dim is an empty sum: zeros of shape [M, N].
TEST(ZeroSize, MatmulWithEmptyInnerDimIsZeros) {
  struct Case {
    std::string name;
    Shape a, b, out;
  };
  const std::vector<Case> cases = {
      {"2-D", {2, 0}, {0, 3}, {2, 3}},
      {"3-D @ 2-D", {4, 2, 0}, {0, 3}, {4, 2, 3}},
      {"batched", {2, 2, 0}, {2, 0, 3}, {2, 2, 3}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    try {
      Tensor out = matmul(Tensor::ones(c.a), Tensor::ones(c.b));
      EXPECT_EQ(out.shape(), c.out);
      EXPECT_EQ(out.to_vector<float>(), std::vector<float>(static_cast<size_t>(shape_numel(c.out)), 0.0f));
    } catch (const Error& e) {
      ADD_FAILURE() << "matmul " << shape_str(c.a) << " @ " << shape_str(c.b) << " threw: " << e.what();
    }
  }
  // linear with in = 0 is the bias alone.
  try {
    Tensor y =
        linear(Tensor::ones({2, 0}), Tensor::ones({3, 0}), Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}));
    EXPECT_EQ(y.shape(), (Shape{2, 3}));
    EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{1, 2, 3, 1, 2, 3}));
  } catch (const Error& e) {
    ADD_FAILURE() << "linear with in = 0 threw: " << e.what();
  }
}

TEST(ZeroSize, CatNarrowAndReshape) {
  Tensor a = iota({2, 3});
  Tensor b = Tensor::from_vector(std::vector<float>{10, 11, 12}, {1, 3});
  Tensor joined = cat({a, Tensor::zeros({0, 3}), b}, 0);
  EXPECT_EQ(joined.shape(), (Shape{3, 3}));
  EXPECT_EQ(joined.to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4, 5, 10, 11, 12}));
  Tensor wide = cat({Tensor::zeros({2, 0}), a, Tensor::zeros({2, 0})}, 1);
  EXPECT_EQ(wide.to_vector<float>(), a.to_vector<float>());
  EXPECT_EQ(cat({Tensor::zeros({0, 3}), Tensor::zeros({0, 3})}, 0).shape(), (Shape{0, 3}));

  for (int64_t start : {0, 1, 3}) {
    Tensor none = a.narrow(1, start, 0);
    EXPECT_EQ(none.shape(), (Shape{2, 0})) << "start " << start;
    EXPECT_EQ(none.numel(), 0);
    EXPECT_TRUE(none.is_contiguous());
    EXPECT_TRUE(none.to_vector<float>().empty());
    EXPECT_EQ(none.contiguous().numel(), 0);
  }
  EXPECT_EQ(a.narrow(0, 2, 0).shape(), (Shape{0, 3}));

  Tensor empty = Tensor::zeros({0, 3});
  EXPECT_EQ(empty.reshape({3, 0}).shape(), (Shape{3, 0}));
  EXPECT_EQ(empty.reshape({0}).shape(), (Shape{0}));
  EXPECT_EQ(empty.reshape({-1, 3}).shape(), (Shape{0, 3}));
  EXPECT_EQ(empty.reshape({2, 0, 5}).shape(), (Shape{2, 0, 5}));
  EXPECT_EQ(empty.transpose(0, 1).reshape({3, 0}).shape(), (Shape{3, 0}));
  EXPECT_THROW(empty.reshape({0, -1}), Error) << "-1 next to a 0 could be anything";
  EXPECT_THROW(empty.reshape({1}), Error);
  EXPECT_EQ(contiguous_strides({0, 3}), (Shape{3, 1}));
}

TEST(ZeroSize, RowOpsOnZeroRows) {
  Tensor x = Tensor::zeros({0, 4});
  EXPECT_EQ(softmax(x).shape(), (Shape{0, 4}));
  EXPECT_EQ(layer_norm(x, Tensor::ones({4}), Tensor::zeros({4})).shape(), (Shape{0, 4}));
  EXPECT_EQ(linear(x, Tensor::ones({2, 4})).shape(), (Shape{0, 2}));
}

// Row ops over an empty last dim ([2, 0]) must return an empty result or raise a clean
// tessera::Error, never crash. Each runs in a child process (a death test) so that a crash
// fails this test instead of killing the whole executable.
TEST(ZeroSizeDeathTest, RowOpsOnAnEmptyLastDimDoNotCrash) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  struct Case {
    std::string name;
    std::function<Tensor()> call;
    Shape shape;
  };
  const std::vector<Case> cases = {
      {"softmax", [] { return softmax(Tensor::zeros({2, 0})); }, {2, 0}},
      {"layer_norm", [] { return layer_norm(Tensor::zeros({2, 0}), Tensor::ones({0}), Tensor::zeros({0})); }, {2, 0}},
      {"rms_norm", [] { return rms_norm(Tensor::zeros({2, 0}), Tensor::ones({0})); }, {2, 0}},
      // No target can be valid with V = 0: a clean error is the right answer.
      {"cross_entropy", [] { return cross_entropy(Tensor::zeros({2, 0}), Tensor::zeros({2}, DType::I64)); }, {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EXIT(
        {
          try {
            std::exit(c.call().shape() == c.shape ? 0 : 1);
          } catch (const Error&) {
            std::exit(0);
          }
        },
        ::testing::ExitedWithCode(0), "");
  }
}

// ---- non-contiguous inputs to ops ----

// Bit-equal results from a view and from its contiguous copy, and agreement with `reference`.
void expect_same_as_contiguous(const Tensor& from_view, const Tensor& from_copy, const std::vector<double>& reference,
                               double tolerance) {
  ASSERT_EQ(from_view.shape(), from_copy.shape());
  std::vector<double> a = from_view.to_vector<double>(), b = from_copy.to_vector<double>();
  EXPECT_EQ(a, b);
  ASSERT_EQ(a.size(), reference.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], reference[i], tolerance) << "element " << i;
}

TEST(NonContiguous, AddWithTransposedOperand) {
  Tensor a = iota({3, 4});
  Tensor b = Tensor::from_vector(random_values(12, 1), {4, 3}).to(DType::F32);
  Tensor bt = b.transpose(0, 1);
  std::vector<float> bv = b.to_vector<float>();
  std::vector<double> reference;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) reference.push_back(static_cast<double>(static_cast<float>(4 * i + j) + bv[j * 3 + i]));
  expect_same_as_contiguous(add(a, bt), add(a, bt.contiguous()), reference, 0.0);
  expect_same_as_contiguous(add(bt, a), add(bt.contiguous(), a), reference, 0.0);
}

TEST(NonContiguous, MatmulOfTransposedViews) {
  // Small integers: every product is exact, so the comparison is exact.
  std::vector<double> av = {1, -2, 3, 0, 4, -1};                    // stored [3, 2]; used as its transpose [2, 3]
  std::vector<double> bv = {2, 1, 0, -3, 1, 1, 2, 5, -1, 0, 3, 2};  // stored [4, 3]; used as [3, 4]
  Tensor a = Tensor::from_vector(av, {3, 2}).transpose(0, 1);
  Tensor b = Tensor::from_vector(bv, {4, 3}).transpose(0, 1);
  std::vector<double> reference;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j) {
      double s = 0;
      for (int k = 0; k < 3; ++k) s += av[k * 2 + i] * bv[j * 3 + k];
      reference.push_back(s);
    }
  expect_same_as_contiguous(matmul(a, b), matmul(a.contiguous(), b.contiguous()), reference, 0.0);
  // Batched: both operands broadcast over a batch of 2 (stride 0) and transposed.
  Tensor a_batch = Tensor::from_vector(av, {3, 2}).unsqueeze(0).expand({2, 3, 2}).transpose(1, 2);
  Tensor b_batch = b.unsqueeze(0).expand({2, 3, 4});
  std::vector<double> twice = reference;
  twice.insert(twice.end(), reference.begin(), reference.end());
  expect_same_as_contiguous(matmul(a_batch, b_batch), matmul(a_batch.contiguous(), b_batch.contiguous()), twice, 0.0);
  expect_same_as_contiguous(matmul(a_batch, b), matmul(a_batch.contiguous(), b.contiguous()), twice, 0.0);
}

TEST(NonContiguous, LayerNormAndSoftmaxOfPermutedView) {
  Tensor x = random_f64({2, 3, 4}, 7);
  Tensor xp = x.permute({0, 2, 1});  // [2, 4, 3], rows along the base's dim 1
  ASSERT_FALSE(xp.is_contiguous());
  Tensor w = Tensor::from_vector(std::vector<double>{0.5, -1.0, 2.0}, {3});
  Tensor b = Tensor::from_vector(std::vector<double>{0.1, 0.2, -0.3}, {3});
  std::vector<double> xv = x.to_vector<double>();
  std::vector<double> wv = w.to_vector<double>(), bv = b.to_vector<double>();
  const double eps = 1e-5;
  std::vector<double> norm_reference, softmax_reference;
  for (int i = 0; i < 2; ++i) {
    for (int k = 0; k < 4; ++k) {
      double row[3];
      for (int j = 0; j < 3; ++j) row[j] = xv[static_cast<size_t>(12 * i + 4 * j + k)];
      double mean = (row[0] + row[1] + row[2]) / 3;
      double var = 0;
      for (double v : row) var += (v - mean) * (v - mean) / 3;
      for (int j = 0; j < 3; ++j) norm_reference.push_back((row[j] - mean) / std::sqrt(var + eps) * wv[j] + bv[j]);
      double max = std::max({row[0], row[1], row[2]}), total = 0;
      for (double v : row) total += std::exp(v - max);
      for (double v : row) softmax_reference.push_back(std::exp(v - max) / total);
    }
  }
  expect_same_as_contiguous(layer_norm(xp, w, b, eps), layer_norm(xp.contiguous(), w, b, eps), norm_reference, 1e-12);
  expect_same_as_contiguous(softmax(xp), softmax(xp.contiguous()), softmax_reference, 1e-14);
}

TEST(NonContiguous, LinearOfNarrowedInput) {
  Tensor x = random_f64({3, 5}, 11);
  Tensor xn = x.narrow(1, 1, 3);  // [3, 3] with row stride 5
  ASSERT_FALSE(xn.is_contiguous());
  Tensor w = random_f64({2, 3}, 12), bias = random_f64({2}, 13);
  std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>(), bv = bias.to_vector<double>();
  std::vector<double> reference;
  for (int r = 0; r < 3; ++r)
    for (int o = 0; o < 2; ++o) {
      double s = bv[o];
      for (int c = 0; c < 3; ++c) s += xv[r * 5 + 1 + c] * wv[o * 3 + c];
      reference.push_back(s);
    }
  expect_same_as_contiguous(linear(xn, w, bias), linear(xn.contiguous(), w, bias), reference, 1e-13);
  // A transposed weight view works too.
  Tensor w_stored_transposed = w.transpose(0, 1).contiguous().transpose(0, 1);
  ASSERT_FALSE(w_stored_transposed.is_contiguous());
  expect_same_as_contiguous(linear(xn, w_stored_transposed, bias), linear(xn.contiguous(), w, bias), reference, 1e-13);
}

TEST(NonContiguous, UnaryAndReductionOfTransposedView) {
  Tensor x = random_f64({3, 4}, 21);
  Tensor xt = x.transpose(0, 1);
  std::vector<double> xv = x.to_vector<double>();
  std::vector<double> exp_reference, row_sums;
  for (int j = 0; j < 4; ++j) {
    double s = 0;
    for (int i = 0; i < 3; ++i) {
      exp_reference.push_back(std::exp(xv[static_cast<size_t>(4 * i + j)]));
      s += xv[static_cast<size_t>(4 * i + j)];
    }
    row_sums.push_back(s);
  }
  expect_same_as_contiguous(exp(xt), exp(xt.contiguous()), exp_reference, 1e-14);
  expect_same_as_contiguous(sum(xt, {1}), sum(xt.contiguous(), {1}), row_sums, 1e-14);
}

// ---- gradients of views ----

TEST(ViewGradients, PermuteAndNarrowRouteGradientsBack) {
  // loss = sum(view * c): d loss / d base puts c where the view reads, 0 elsewhere.
  Tensor base = iota({2, 3}, DType::F64).set_requires_grad(true);
  Tensor c = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {3, 2});
  sum(mul(base.transpose(0, 1), c)).backward();
  EXPECT_EQ(base.grad().to_vector<double>(), (std::vector<double>{1, 3, 5, 2, 4, 6}));

  Tensor other = iota({2, 3}, DType::F64).set_requires_grad(true);
  Tensor c2 = Tensor::from_vector(std::vector<double>{7, 8, 9, 10}, {2, 2});
  sum(mul(other.narrow(1, 1, 2), c2)).backward();
  EXPECT_EQ(other.grad().to_vector<double>(), (std::vector<double>{0, 7, 8, 0, 9, 10}));
}

// ---- expanded (stride 0) inputs ----

TEST(Expanded, AddOfExpandedRow) {
  Tensor a = iota({3, 4});
  Tensor row = Tensor::from_vector(std::vector<float>{10, 20, 30, 40}, {1, 4});
  Tensor wide = row.expand({3, 4});
  std::vector<double> reference;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) reference.push_back(4 * i + j + 10.0 * (j + 1));
  expect_same_as_contiguous(add(a, wide), add(a, wide.contiguous()), reference, 0.0);
  expect_same_as_contiguous(add(wide, a), add(a, row), reference, 0.0);
  // Both operands broadcast: an outer sum.
  Tensor column = Tensor::from_vector(std::vector<float>{1, 2, 3}, {3, 1});
  std::vector<double> outer;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j) outer.push_back((i + 1) + 10.0 * (j + 1));
  expect_same_as_contiguous(add(column.expand({3, 4}), wide), add(column, row), outer, 0.0);
}

TEST(Expanded, GradientOfExpandSumsOverBroadcastDims) {
  struct Case {
    Shape input, target;
  };
  const std::vector<Case> cases = {
      {{1, 4}, {3, 4}},       {{3, 1}, {3, 4}}, {{4}, {2, 3, 4}},
      {{2, 1, 3}, {2, 4, 3}}, {{1, 1}, {2, 5}}, {{3}, {3}},  // no-op
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(shape_str(c.input) + " -> " + shape_str(c.target));
    Tensor x = iota(c.input, DType::F64).set_requires_grad(true);
    // Integer weights: all sums are exact.
    std::vector<double> wv(static_cast<size_t>(shape_numel(c.target)));
    for (size_t i = 0; i < wv.size(); ++i) wv[i] = static_cast<double>((i * 7) % 11) - 5.0;
    Tensor w = Tensor::from_vector(wv, c.target);
    sum(mul(x.expand(c.target), w)).backward();
    // Reference: each output element adds its weight to the input element it reads
    // (leading new dims dropped, size-1 dims read index 0).
    std::vector<double> expected(static_cast<size_t>(shape_numel(c.input)), 0.0);
    size_t lead = c.target.size() - c.input.size();
    for_each_index(c.target, [&](const Index& t) {
      Index in(c.input.size());
      for (size_t d = 0; d < in.size(); ++d) in[d] = c.input[d] == 1 ? 0 : t[d + lead];
      expected[static_cast<size_t>(linear_index(c.input, in))] += wv[static_cast<size_t>(linear_index(c.target, t))];
    });
    ASSERT_TRUE(x.grad().defined());
    EXPECT_EQ(x.grad().shape(), c.input);
    EXPECT_EQ(x.grad().to_vector<double>(), expected);
  }
}

TEST(Expanded, BroadcastingAddGradientMatchesExplicitExpand) {
  Tensor row = Tensor::from_vector(std::vector<double>{1, 2, 3}, {3}).set_requires_grad(true);
  Tensor m = Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}).set_requires_grad(true);
  Tensor w = Tensor::from_vector(std::vector<double>{1, -1, 2, 3, 0, -2}, {2, 3});
  sum(mul(add(m, row), w)).backward();
  EXPECT_EQ(row.grad().to_vector<double>(), (std::vector<double>{4, -1, 0}));
  EXPECT_EQ(m.grad().to_vector<double>(), (std::vector<double>{1, -1, 2, 3, 0, -2}));
}

// ---- dtype conversion ----

TEST(DtypeConversion, Bf16AndF16RoundTripRoundToNearestEven) {
  struct Case {
    DType dtype;
    float in, out;
  };
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<Case> cases = {
      {DType::BF16, 1.0f, 1.0f},
      {DType::BF16, -2.5f, -2.5f},
      {DType::BF16, 1.0f + 0x1p-8f, 1.0f},                       // tie: 1.0 has an even mantissa
      {DType::BF16, 1.0f + 0x1.8p-7f, 1.0f + 0x1p-6f},           // tie: rounds up to the even neighbour
      {DType::BF16, 1.0f + 0x1p-8f + 0x1p-20f, 1.0f + 0x1p-7f},  // just past the tie
      {DType::BF16, 3.14159265f, 3.140625f},
      {DType::BF16, 0.001f, 0.00099945068359375f},
      {DType::BF16, 65504.0f, 65536.0f},
      {DType::BF16, inf, inf},
      {DType::F16, 1.0f + 0x1p-11f, 1.0f},              // tie to even
      {DType::F16, 1.0f + 0x1.8p-10f, 1.0f + 0x1p-9f},  // tie to even, upwards
      {DType::F16, 0.1f, 0.0999755859375f},
      {DType::F16, 65504.0f, 65504.0f},
      {DType::F16, 65520.0f, inf},         // overflows
      {DType::F16, 1e-8f, 0.0f},           // below half the smallest subnormal
      {DType::F16, 0x1.8p-24f, 0x1p-23f},  // subnormal tie to even
      {DType::F16, -0x1p-24f, -0x1p-24f},  // smallest subnormal
  };
  std::vector<float> bf16_in, bf16_out, f16_in, f16_out;
  for (const Case& c : cases) {
    (c.dtype == DType::BF16 ? bf16_in : f16_in).push_back(c.in);
    (c.dtype == DType::BF16 ? bf16_out : f16_out).push_back(c.out);
  }
  for (auto [dtype, in, out] : {std::tuple{DType::BF16, bf16_in, bf16_out}, std::tuple{DType::F16, f16_in, f16_out}}) {
    SCOPED_TRACE(dtype_name(dtype));
    Tensor t = Tensor::from_vector(in, {static_cast<int64_t>(in.size())});
    Tensor narrow = t.to(dtype);
    EXPECT_EQ(narrow.dtype(), dtype);
    EXPECT_EQ(narrow.storage()->nbytes(), in.size() * 2);
    EXPECT_EQ(narrow.to(DType::F32).to_vector<float>(), out);
    EXPECT_EQ(narrow.to(DType::F64).to_vector<double>(), std::vector<double>(out.begin(), out.end()));
  }
  Tensor nan = Tensor::full({2}, std::numeric_limits<double>::quiet_NaN());
  for (DType dtype : {DType::BF16, DType::F16}) {
    for (float v : nan.to(dtype).to_vector<float>()) EXPECT_TRUE(std::isnan(v)) << dtype_name(dtype);
  }
}

TEST(DtypeConversion, FloatToIntegerTruncatesTowardZero) {
  Tensor x = Tensor::from_vector(std::vector<double>{2.7, -2.7, 0.5, -0.5, 3.0, -0.0, 1e10, -7.999}, {8});
  EXPECT_EQ(x.to(DType::I64).to_vector<int64_t>(), (std::vector<int64_t>{2, -2, 0, 0, 3, 0, 10000000000, -7}));
  Tensor small = x.narrow(0, 0, 6).to(DType::F32);
  EXPECT_EQ(small.to(DType::I32).to_vector<int32_t>(), (std::vector<int32_t>{2, -2, 0, 0, 3, 0}));
  // Integers to float round to the nearest representable value.
  Tensor big = Tensor::from_vector(std::vector<int64_t>{16777217, -3, 0}, {3});
  EXPECT_EQ(big.to(DType::F32).to_vector<float>(), (std::vector<float>{16777216.0f, -3.0f, 0.0f}));
  EXPECT_EQ(big.to(DType::F64).to_vector<double>(), (std::vector<double>{16777217.0, -3.0, 0.0}));
}

TEST(DtypeConversion, Bool) {
  Tensor x = Tensor::from_vector(std::vector<float>{0.0f, 1.5f, -2.0f, -0.0f, 0.25f}, {5});
  Tensor flags = x.to(DType::Bool);
  EXPECT_EQ(flags.dtype(), DType::Bool);
  EXPECT_EQ(flags.storage()->nbytes(), 5u);
  EXPECT_EQ(flags.to_vector<bool>(), (std::vector<bool>{false, true, true, false, true}));
  EXPECT_EQ(flags.to(DType::F32).to_vector<float>(), (std::vector<float>{0, 1, 1, 0, 1}));
  EXPECT_EQ(flags.to(DType::I64).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 1, 0, 1}));
  Tensor from_bools = Tensor::from_vector(std::vector<bool>{true, false, true}, {3});
  EXPECT_EQ(from_bools.dtype(), DType::Bool);
  EXPECT_EQ(from_bools.to_vector<double>(), (std::vector<double>{1, 0, 1}));
  EXPECT_EQ(from_bools.to(DType::BF16).to_vector<float>(), (std::vector<float>{1, 0, 1}));
}

TEST(DtypeConversion, SameDtypeIsANoOpAndViewsConvertInViewOrder) {
  Tensor x = iota({2, 3});
  EXPECT_TRUE(x.to(DType::F32).is_same(x));
  Tensor converted = x.transpose(0, 1).to(DType::F64);
  EXPECT_EQ(converted.shape(), (Shape{3, 2}));
  EXPECT_EQ(converted.to_vector<double>(), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  Tensor expanded = Tensor::from_vector(std::vector<double>{1.5, -2.5}, {2, 1}).expand({2, 3}).to(DType::I64);
  EXPECT_EQ(expanded.to_vector<int64_t>(), (std::vector<int64_t>{1, 1, 1, -2, -2, -2}));
  // The gradient of a conversion comes back in the source dtype.
  Tensor leaf = Tensor::ones({3}, DType::F32).set_requires_grad(true);
  sum(scale(leaf.to(DType::F64), 2.0)).backward();
  ASSERT_TRUE(leaf.grad().defined());
  EXPECT_EQ(leaf.grad().dtype(), DType::F32);
  EXPECT_EQ(leaf.grad().to_vector<float>(), (std::vector<float>{2, 2, 2}));
}

// ---- to_vector / item ----

TEST(HostAccess, ToVectorAndItem) {
  Tensor ints = Tensor::from_vector(std::vector<int64_t>{5, -6, 7, 8}, {2, 2});
  EXPECT_EQ(ints.to_vector<int64_t>(), (std::vector<int64_t>{5, -6, 7, 8}));
  EXPECT_EQ(ints.to_vector<double>(), (std::vector<double>{5, -6, 7, 8}));
  EXPECT_EQ(ints.transpose(0, 1).to_vector<int64_t>(), (std::vector<int64_t>{5, 7, -6, 8}));
  EXPECT_EQ(Tensor::from_vector(std::vector<float>{1, 2}, {2}).expand({2, 2}).to_vector<float>(),
            (std::vector<float>{1, 2, 1, 2}));

  EXPECT_EQ(Tensor::full({}, 2.5).item(), 2.5);
  EXPECT_EQ(Tensor::full({1, 1, 1}, -4.0, DType::F64).item(), -4.0);
  EXPECT_EQ(Tensor::full({1}, 3.0, DType::BF16).item(), 3.0);
  EXPECT_EQ(Tensor::full({1}, 9.0, DType::I64).item(), 9.0);
  EXPECT_EQ(Tensor::full({1}, 1.0, DType::Bool).item(), 1.0);
  EXPECT_EQ(iota({2, 3}).narrow(0, 1, 1).narrow(1, 2, 1).item(), 5.0) << "item of a view reads the view's element";
  EXPECT_EQ(Tensor::arange(4).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2, 3}));

  EXPECT_THROW(iota({2}).item(), Error);
  EXPECT_THROW(Tensor::zeros({0}).item(), Error);
  EXPECT_THROW(Tensor::from_vector(std::vector<float>{1, 2, 3}, {2, 2}), Error);
}

}  // namespace
}  // namespace tessera
