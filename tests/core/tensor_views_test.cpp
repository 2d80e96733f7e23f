// Tests of tensor views and layouts (core/tensor_views.cpp, core/tensor.cpp): views share
// storage with their base, shapes/strides/offsets of every view op, contiguity edge cases and
// contiguous() of permuted and broadcast (stride 0) views.
//
// What each test compares against: values are written out by hand or computed with plain
// index arithmetic on the base's row-major values ("element (i, j, k) of a [2, 3, 4] base
// is base[12 i + 4 j + k]"), never by going through another view.
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

}  // namespace
}  // namespace tessera
