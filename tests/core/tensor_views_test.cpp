// Tests of tensor views and layouts (core/tensor_views.cpp, core/tensor.cpp): views share
// storage with their base, shapes/strides/offsets of every view op, contiguity edge cases,
// contiguous() of permuted and broadcast (stride 0) views, zero-size dims, ops on
// non-contiguous and expanded inputs, the gradient of expand, dtype conversion, to_vector
// and item.
//
// What each test compares against: values are written out by hand or computed with plain
// index arithmetic on the base's row-major values ("element (i, j, k) of a [2, 3, 4] base
// is base[12 i + 4 j + k]"), never by going through another view; ops on views are compared
// with the same op on a contiguous copy (bit-exact: the kernels see the same numbers) and
// with a double-precision loop written here.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "core/ops/ops.h"
#include "core/tensor.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;
using Index = std::vector<int64_t>;

// 0, 1, 2, ... in row-major order.
Tensor iota(const Shape& shape, DType dtype = DType::F32) {
  std::vector<double> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i);
  return Tensor::from_vector(v, shape).to(dtype);
}

std::vector<double> random_values(size_t n, uint32_t seed, double low = -2.0, double high = 2.0) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(low, high);
  std::vector<double> v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

Tensor random_f64(const Shape& shape, uint32_t seed) {
  return Tensor::from_vector(random_values(static_cast<size_t>(shape_numel(shape)), seed), shape);
}

// Calls fn(index) for every multi-index of `shape` in row-major order.
void for_each_index(const Shape& shape, const std::function<void(const Index&)>& fn) {
  int64_t n = shape_numel(shape);
  Index idx(shape.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    fn(idx);
    for (size_t d = shape.size(); d-- > 0;) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

// Row-major linear index of `idx` in `shape`.
int64_t linear_index(const Shape& shape, const Index& idx) {
  int64_t at = 0;
  for (size_t d = 0; d < shape.size(); ++d) at = at * shape[d] + idx[d];
  return at;
}

const char* byte_ptr(const Tensor& t) { return static_cast<const char*>(t.data_ptr()); }

// ---- views share storage ----

TEST(TensorViews, WritesThroughViewsReachTheBase) {
  struct Case {
    std::string name;
    std::function<void(const Tensor& base)> write;  // writes -1 through some view of a [3, 4] base
    std::vector<float> expected;                    // the base afterwards
  };
  const std::vector<Case> cases = {
      {"narrow columns", [](const Tensor& b) { b.narrow(1, 1, 2).fill_(-1); },
       {0, -1, -1, 3, 4, -1, -1, 7, 8, -1, -1, 11}},
      {"narrow rows", [](const Tensor& b) { b.narrow(0, 2, 1).fill_(-1); }, {0, 1, 2, 3, 4, 5, 6, 7, -1, -1, -1, -1}},
      {"permute then narrow (a column)", [](const Tensor& b) { b.permute({1, 0}).narrow(0, 3, 1).fill_(-1); },
       {0, 1, 2, -1, 4, 5, 6, -1, 8, 9, 10, -1}},
      {"unsqueeze then narrow", [](const Tensor& b) { b.unsqueeze(1).narrow(0, 1, 1).fill_(-1); },
       {0, 1, 2, 3, -1, -1, -1, -1, 8, 9, 10, 11}},
      {"transpose, narrow, squeeze (row 1)",
       [](const Tensor& b) { b.transpose(0, 1).narrow(1, 1, 1).squeeze(1).fill_(-1); },
       {0, 1, 2, 3, -1, -1, -1, -1, 8, 9, 10, 11}},
      {"copy_ into a strided view (a column)",
       [](const Tensor& b) {
         b.transpose(0, 1).narrow(0, 0, 1).copy_(Tensor::from_vector(std::vector<float>{-1, -2, -3}, {1, 3}));
       },
       {-1, 1, 2, 3, -2, 5, 6, 7, -3, 9, 10, 11}},
      {"view of a row block", [](const Tensor& b) { b.narrow(0, 1, 2).view({8}).narrow(0, 3, 2).fill_(-1); },
       {0, 1, 2, 3, 4, 5, 6, -1, -1, 9, 10, 11}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Tensor base = iota({3, 4});
    c.write(base);
    EXPECT_EQ(base.to_vector<float>(), c.expected);
  }
}

TEST(TensorViews, WritesThroughExpandReachTheBase) {
  Tensor row = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {1, 4});
  Tensor wide = row.expand({3, 4});
  EXPECT_EQ(wide.storage(), row.storage());
  EXPECT_EQ(wide.strides(), (Shape{0, 1}));
  wide.narrow(1, 2, 1).fill_(9);  // one element of row, seen three times
  EXPECT_EQ(row.to_vector<float>(), (std::vector<float>{1, 2, 9, 4}));
  EXPECT_EQ(wide.to_vector<float>(), (std::vector<float>{1, 2, 9, 4, 1, 2, 9, 4, 1, 2, 9, 4}));
  // And the other way round: writes to the base show through every view.
  row.fill_(5);
  EXPECT_EQ(wide.to_vector<float>(), std::vector<float>(12, 5));
}

TEST(TensorViews, DataPtrOffsets) {
  Tensor base = iota({3, 4, 5});  // strides {20, 5, 1}
  const char* p = byte_ptr(base);
  const int64_t f = sizeof(float);
  struct Case {
    std::string name;
    Tensor view;
    int64_t offset;
  };
  const std::vector<Case> cases = {
      {"narrow dim 0", base.narrow(0, 2, 1), 40},
      {"narrow dim 1", base.narrow(1, 1, 3), 5},
      {"narrow dim 2", base.narrow(2, 4, 1), 4},
      {"narrow twice", base.narrow(0, 1, 2).narrow(2, 3, 2), 23},
      {"narrow of a permute", base.permute({2, 0, 1}).narrow(0, 2, 1).narrow(2, 3, 1), 17},
      {"permute keeps the offset", base.narrow(1, 2, 1).permute({2, 1, 0}), 10},
      {"expand keeps the offset", base.narrow(0, 1, 1).expand({4, 4, 5}), 20},
      {"unsqueeze keeps the offset", base.narrow(2, 1, 1).unsqueeze(0), 1},
      {"view keeps the offset", base.narrow(0, 1, 2).view({40}), 20},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(c.view.storage(), base.storage());
    EXPECT_EQ(c.view.offset(), c.offset);
    EXPECT_EQ(byte_ptr(c.view) - p, c.offset * f);
    EXPECT_EQ(c.view.data<float>()[0], static_cast<float>(c.offset)) << "first element is base[offset]";
  }
}

// ---- shapes and strides of every view op ----

TEST(TensorViews, ShapesStridesAndValuesTable) {
  // Base [2, 3, 4] holds its own row-major index: strides {12, 4, 1}. `source` maps an index of
  // the view to the base element it must show (by the op's definition, not by strides).
  struct Case {
    std::string name;
    std::function<Tensor(const Tensor&)> make;
    Shape shape;
    Shape strides;
    int64_t offset;
    std::function<int64_t(const Index&)> source;
  };
  const std::vector<Case> cases = {
      {"permute {2, 0, 1}", [](const Tensor& b) { return b.permute({2, 0, 1}); },
       {4, 2, 3}, {1, 12, 4}, 0, [](const Index& i) { return 12 * i[1] + 4 * i[2] + i[0]; }},
      {"permute {-1, 1, 0}", [](const Tensor& b) { return b.permute({-1, 1, 0}); },
       {4, 3, 2}, {1, 4, 12}, 0, [](const Index& i) { return 12 * i[2] + 4 * i[1] + i[0]; }},
      {"transpose(0, 2)", [](const Tensor& b) { return b.transpose(0, 2); },
       {4, 3, 2}, {1, 4, 12}, 0, [](const Index& i) { return 12 * i[2] + 4 * i[1] + i[0]; }},
      {"transpose(-1, -2)", [](const Tensor& b) { return b.transpose(-1, -2); },
       {2, 4, 3}, {12, 1, 4}, 0, [](const Index& i) { return 12 * i[0] + 4 * i[2] + i[1]; }},
      {"narrow(1, 1, 2)", [](const Tensor& b) { return b.narrow(1, 1, 2); },
       {2, 2, 4}, {12, 4, 1}, 4, [](const Index& i) { return 12 * i[0] + 4 * (i[1] + 1) + i[2]; }},
      {"narrow(-1, 1, 2)", [](const Tensor& b) { return b.narrow(-1, 1, 2); },
       {2, 3, 2}, {12, 4, 1}, 1, [](const Index& i) { return 12 * i[0] + 4 * i[1] + i[2] + 1; }},
      {"unsqueeze(0)", [](const Tensor& b) { return b.unsqueeze(0); },
       {1, 2, 3, 4}, {24, 12, 4, 1}, 0, [](const Index& i) { return 12 * i[1] + 4 * i[2] + i[3]; }},
      {"unsqueeze(1)", [](const Tensor& b) { return b.unsqueeze(1); },
       {2, 1, 3, 4}, {12, 12, 4, 1}, 0, [](const Index& i) { return 12 * i[0] + 4 * i[2] + i[3]; }},
      {"unsqueeze(-1)", [](const Tensor& b) { return b.unsqueeze(-1); },
       {2, 3, 4, 1}, {12, 4, 1, 1}, 0, [](const Index& i) { return 12 * i[0] + 4 * i[1] + i[2]; }},
      {"narrow then squeeze(1)", [](const Tensor& b) { return b.narrow(1, 2, 1).squeeze(1); },
       {2, 4}, {12, 1}, 8, [](const Index& i) { return 12 * i[0] + 8 + i[1]; }},
      {"narrow then squeeze(-3)", [](const Tensor& b) { return b.narrow(0, 1, 1).squeeze(-3); },
       {3, 4}, {4, 1}, 12, [](const Index& i) { return 12 + 4 * i[0] + i[1]; }},
      {"expand [2, 1, 4] -> [3, 2, 5, 4]", [](const Tensor& b) { return b.narrow(1, 1, 1).expand({3, 2, 5, 4}); },
       {3, 2, 5, 4}, {0, 12, 0, 1}, 4, [](const Index& i) { return 12 * i[1] + 4 + i[3]; }},
      {"expand with -1", [](const Tensor& b) { return b.narrow(2, 0, 1).expand({-1, -1, 3}); },
       {2, 3, 3}, {12, 4, 0}, 0, [](const Index& i) { return 12 * i[0] + 4 * i[1]; }},
      {"flatten()", [](const Tensor& b) { return b.flatten(); }, {24}, {1}, 0, [](const Index& i) { return i[0]; }},
      {"flatten(1)", [](const Tensor& b) { return b.flatten(1); },
       {2, 12}, {12, 1}, 0, [](const Index& i) { return 12 * i[0] + i[1]; }},
      {"flatten(0, 1)", [](const Tensor& b) { return b.flatten(0, 1); },
       {6, 4}, {4, 1}, 0, [](const Index& i) { return 4 * i[0] + i[1]; }},
      {"flatten(1, 1) is a no-op", [](const Tensor& b) { return b.flatten(1, 1); },
       {2, 3, 4}, {12, 4, 1}, 0, [](const Index& i) { return 12 * i[0] + 4 * i[1] + i[2]; }},
      {"view {4, 6}", [](const Tensor& b) { return b.view({4, 6}); },
       {4, 6}, {6, 1}, 0, [](const Index& i) { return 6 * i[0] + i[1]; }},
      {"view {-1, 8}", [](const Tensor& b) { return b.view({-1, 8}); },
       {3, 8}, {8, 1}, 0, [](const Index& i) { return 8 * i[0] + i[1]; }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Tensor base = iota({2, 3, 4});
    Tensor v = c.make(base);
    EXPECT_EQ(v.shape(), c.shape);
    EXPECT_EQ(v.strides(), c.strides);
    EXPECT_EQ(v.offset(), c.offset);
    EXPECT_EQ(v.storage(), base.storage()) << "a view must share its base's storage";
    EXPECT_EQ(v.dim(), static_cast<int64_t>(c.shape.size()));
    EXPECT_EQ(v.numel(), shape_numel(c.shape));
    std::vector<float> got = v.to_vector<float>();
    ASSERT_EQ(got.size(), static_cast<size_t>(shape_numel(c.shape)));
    for_each_index(c.shape, [&](const Index& i) {
      EXPECT_EQ(got[static_cast<size_t>(linear_index(c.shape, i))], static_cast<float>(c.source(i)))
          << "at " << shape_str(i);
    });
  }
}

TEST(TensorViews, FlattenOfNonContiguousCopies) {
  Tensor base = iota({2, 3});
  Tensor flat = base.transpose(0, 1).flatten();
  EXPECT_EQ(flat.shape(), (Shape{6}));
  EXPECT_NE(flat.storage(), base.storage());
  EXPECT_EQ(flat.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  Tensor scalar = Tensor::full({}, 3.5);
  EXPECT_EQ(scalar.flatten().shape(), (Shape{1}));
}

// ---- view vs reshape ----

TEST(TensorViews, ViewOfNonContiguousThrowsReshapeCopies) {
  Tensor base = iota({2, 3});
  Tensor t = base.transpose(0, 1);
  ASSERT_FALSE(t.is_contiguous());
  try {
    t.view({6});
    FAIL() << "view of a transposed tensor did not throw";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("view"));
    EXPECT_THAT(e.what(), HasSubstr("[3, 2]"));
  }
  EXPECT_THROW(base.narrow(1, 0, 2).view({4}), Error);

  Tensor copied = t.reshape({6});
  EXPECT_NE(copied.storage(), base.storage()) << "reshape of a non-contiguous tensor copies";
  EXPECT_EQ(copied.to_vector<float>(), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  copied.fill_(-1);
  EXPECT_EQ(base.to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4, 5})) << "the copy is independent";

  Tensor viewed = base.reshape({3, 2});
  EXPECT_EQ(viewed.storage(), base.storage()) << "reshape of a contiguous tensor is a view";
  EXPECT_EQ(viewed.data_ptr(), base.data_ptr());

  // A row block is contiguous: view works and keeps the offset.
  Tensor rows = iota({4, 3}).narrow(0, 1, 2);
  ASSERT_TRUE(rows.is_contiguous());
  Tensor rows_flat = rows.view({6});
  EXPECT_EQ(rows_flat.offset(), 3);
  EXPECT_EQ(rows_flat.to_vector<float>(), (std::vector<float>{3, 4, 5, 6, 7, 8}));
}

// ---- is_contiguous ----

TEST(TensorViews, IsContiguousEdgeCases) {
  struct Case {
    Shape shape, strides;
    bool contiguous;
  };
  const std::vector<Case> cases = {
      {{}, {}, true},                                     // a scalar
      {{3}, {1}, true},         {{3}, {2}, false},        // every other element
      {{4}, {0}, false},                                  // broadcast
      {{2, 3}, {3, 1}, true},   {{2, 3}, {1, 2}, false},  // transposed
      {{1, 3}, {100, 1}, true},                           // the stride of a size-1 dim does not matter
      {{3, 1}, {1, 7}, true},   {{2, 1, 3}, {3, 99, 1}, true},
      {{1, 1}, {5, 9}, true},   {{1, 4}, {0, 1}, true},  // expanded only along a size-1 dim
      {{3, 4}, {0, 1}, false},                           // expanded [1, 4] -> [3, 4]
      {{2, 3}, {4, 1}, false},                           // rows padded (a narrow of a wider tensor)
      {{2, 0}, {0, 0}, true},                            // empty, zero dim last
      {{0, 3}, {3, 1}, true},                            // empty, row-major strides
  };
  auto storage = Tensor::zeros({64}).storage();
  for (const Case& c : cases) {
    Tensor t = make_tensor(storage, c.shape, c.strides, 0, DType::F32);
    EXPECT_EQ(t.is_contiguous(), c.contiguous) << "shape " << shape_str(c.shape) << " strides " << shape_str(c.strides);
    Tensor shifted = make_tensor(storage, c.shape, c.strides, 5, DType::F32);
    EXPECT_EQ(shifted.is_contiguous(), c.contiguous) << "the offset does not matter";
  }
  // Views that stay contiguous.
  Tensor base = iota({3, 4});
  EXPECT_TRUE(base.narrow(0, 1, 2).is_contiguous());
  EXPECT_TRUE(base.narrow(1, 0, 4).is_contiguous());
  EXPECT_FALSE(base.narrow(1, 0, 3).is_contiguous());
  EXPECT_TRUE(base.narrow(0, 1, 1).narrow(1, 1, 2).is_contiguous()) << "a piece of one row";
  EXPECT_TRUE(iota({1, 4}).transpose(0, 1).is_contiguous()) << "[1, 4] transposed is [4, 1]";
  EXPECT_TRUE(base.unsqueeze(0).is_contiguous());
  EXPECT_TRUE(base.unsqueeze(2).is_contiguous());
}

// An empty tensor has no elements to lay out, so it is contiguous whatever its strides
// (PyTorch's rule). Reachable through ordinary views: a permuted [0, 3, 4].
TEST(TensorViews, EmptyTensorsAreContiguousWhateverTheirStrides) {
  auto storage = Tensor::zeros({64}).storage();
  const std::vector<std::pair<Shape, Shape>> layouts = {
      {{0, 3}, {1, 5}},
      {{3, 0, 2}, {7, 1, 3}},
      {{0, 4, 3}, {12, 1, 4}},
  };
  for (const auto& [shape, strides] : layouts) {
    EXPECT_TRUE(make_tensor(storage, shape, strides, 0, DType::F32).is_contiguous())
        << "shape " << shape_str(shape) << " strides " << shape_str(strides);
  }
  Tensor permuted = Tensor::zeros({0, 3, 4}).permute({0, 2, 1});
  EXPECT_TRUE(permuted.is_contiguous());
  try {
    EXPECT_EQ(permuted.view({0, 12}).shape(), (Shape{0, 12}));
  } catch (const Error& e) {
    ADD_FAILURE() << "view of an empty permuted tensor threw: " << e.what();
  }
}

// ---- contiguous() ----

TEST(TensorViews, ContiguousOfPermutedAndExpandedViews) {
  // c[i][j][k] = 100 i + 10 j + k, so a value names its base index.
  std::vector<float> coded_values;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) coded_values.push_back(static_cast<float>(100 * i + 10 * j + k));
  Tensor coded = Tensor::from_vector(coded_values, {2, 3, 4});

  struct Case {
    std::string name;
    Tensor view;
    Shape shape;
    std::function<float(const Index&)> expected;
  };
  Tensor column = Tensor::from_vector(std::vector<float>{1, 2, 3}, {3, 1});
  const std::vector<Case> cases = {
      {"permute {2, 0, 1}", coded.permute({2, 0, 1}),
       {4, 2, 3}, [](const Index& x) { return static_cast<float>(100 * x[1] + 10 * x[2] + x[0]); }},
      {"transpose(0, 1)", coded.transpose(0, 1),
       {3, 2, 4}, [](const Index& x) { return static_cast<float>(100 * x[1] + 10 * x[0] + x[2]); }},
      {"narrow then permute", coded.narrow(2, 1, 2).permute({2, 1, 0}),
       {2, 3, 2}, [](const Index& x) { return static_cast<float>(100 * x[2] + 10 * x[1] + x[0] + 1); }},
      {"expand [3, 1] -> [2, 3, 4] (strides 0, 1, 0)", column.expand({2, 3, 4}),
       {2, 3, 4}, [](const Index& x) { return static_cast<float>(x[1] + 1); }},
      {"expand then transpose", column.expand({3, 2}).transpose(0, 1),
       {2, 3}, [](const Index& x) { return static_cast<float>(x[1] + 1); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_FALSE(c.view.is_contiguous());
    Tensor packed = c.view.contiguous();
    EXPECT_TRUE(packed.is_contiguous());
    EXPECT_EQ(packed.shape(), c.shape);
    EXPECT_EQ(packed.strides(), contiguous_strides(c.shape));
    EXPECT_EQ(packed.offset(), 0);
    EXPECT_NE(packed.storage(), c.view.storage());
    // Read the packed storage directly: element i is at data[i].
    const float* data = packed.data<float>();
    for_each_index(c.shape, [&](const Index& x) {
      EXPECT_EQ(data[linear_index(c.shape, x)], c.expected(x)) << "at " << shape_str(x);
    });
  }
  // The copy of an expanded view is independent of its source.
  Tensor packed = column.expand({3, 4}).contiguous();
  packed.fill_(0);
  EXPECT_EQ(column.to_vector<float>(), (std::vector<float>{1, 2, 3}));
  // contiguous() of a contiguous tensor is the tensor itself; clone() always copies.
  EXPECT_TRUE(coded.contiguous().is_same(coded));
  EXPECT_NE(coded.clone().storage(), coded.storage());
  EXPECT_EQ(coded.clone().to_vector<float>(), coded_values);
}

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
