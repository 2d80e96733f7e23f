// RewardHead reads each row's last real token: its output equals w . hidden[b, len_b - 1]
// computed by hand, only those positions receive gradient, and the gradient matches finite
// differences.
#include "posttrain/reward_head.h"

#include <gtest/gtest.h>

#include "core/ops/ops.h"
#include "support/gradcheck.h"

namespace tessera {
namespace {

constexpr int64_t kB = 3, kT = 4, kC = 5;

TEST(RewardHead, ScoresTheLastRealTokenOfEachRow) {
  Generator generator(7);
  RewardHead head(kC, generator, 0.5, {DType::F64});
  ASSERT_EQ(head.named_parameters().size(), 1u);
  EXPECT_EQ(head.named_parameters()[0].first, "weight");
  EXPECT_EQ(head.weight().shape(), (Shape{1, kC}));
  Tensor hidden = randn({kB, kT, kC}, generator, DType::F64);
  std::vector<double> h = hidden.to_vector<double>(), w = head.weight().to_vector<double>();
  const std::vector<int64_t> lengths = {4, 1, 2};
  std::vector<double> got = head.forward(hidden, lengths).to_vector<double>();
  ASSERT_EQ(got.size(), static_cast<size_t>(kB));
  for (int64_t b = 0; b < kB; ++b) {
    double want = 0;
    for (int64_t c = 0; c < kC; ++c)
      want +=
          w[static_cast<size_t>(c)] * h[static_cast<size_t>((b * kT + lengths[static_cast<size_t>(b)] - 1) * kC + c)];
    EXPECT_NEAR(got[static_cast<size_t>(b)], want, 1e-14) << "row " << b;
  }
  // The mask form: right padding, and a row whose mask has a hole still reads its last 1.
  Tensor mask = Tensor::from_vector(std::vector<float>{1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 1, 0}, {kB, kT});
  EXPECT_EQ(last_token_indices(mask), (std::vector<int64_t>{3, 0, 2}));
  std::vector<double> by_mask = head.forward(hidden, mask).to_vector<double>();
  std::vector<double> by_length = head.forward(hidden, std::vector<int64_t>{4, 1, 3}).to_vector<double>();
  EXPECT_EQ(by_mask, by_length);
  // values(): one per position, the last-token reward among them.
  std::vector<double> values = head.values(hidden).to_vector<double>();
  EXPECT_NEAR(values[static_cast<size_t>(0 * kT + 3)], got[0], 1e-14);
  EXPECT_NEAR(values[static_cast<size_t>(2 * kT + 1)], got[2], 1e-14);
}

TEST(RewardHead, GradientReachesOnlyTheScoredPositions) {
  Generator generator(8);
  RewardHead head(kC, generator, 0.5, {DType::F64});
  Tensor hidden = randn({kB, kT, kC}, generator, DType::F64).set_requires_grad(true);
  sum(head.forward(hidden, std::vector<int64_t>{2, 4, 1})).backward();
  std::vector<double> grad = hidden.grad().to_vector<double>(), w = head.weight().to_vector<double>();
  const std::vector<int64_t> scored = {1, 3, 0};
  for (int64_t b = 0; b < kB; ++b) {
    for (int64_t t = 0; t < kT; ++t) {
      for (int64_t c = 0; c < kC; ++c) {
        double want = t == scored[static_cast<size_t>(b)] ? w[static_cast<size_t>(c)] : 0.0;
        EXPECT_EQ(grad[static_cast<size_t>((b * kT + t) * kC + c)], want) << b << "," << t << "," << c;
      }
    }
  }
  testing::GradcheckResult check = testing::gradcheck(
      [&](const std::vector<Tensor>& x) {
        return head.forward(x[0], std::vector<int64_t>{2, 4, 1});
      },
      {randn({kB, kT, kC}, generator, DType::F64).set_requires_grad(true)});
  EXPECT_LT(check.max_relative_error, 1e-8);
}

TEST(RewardHead, RefusesBadLengthsAndShapes) {
  Generator generator(9);
  RewardHead head(kC, generator);
  Tensor hidden = Tensor::zeros({kB, kT, kC});
  EXPECT_THROW(head.forward(hidden, std::vector<int64_t>{1, 2}), Error);
  EXPECT_THROW(head.forward(hidden, std::vector<int64_t>{1, 0, 2}), Error);
  EXPECT_THROW(head.forward(hidden, std::vector<int64_t>{1, 5, 2}), Error);
  EXPECT_THROW(head.forward(Tensor::zeros({kB, kT, kC + 1}), std::vector<int64_t>{1, 1, 1}), Error);
  EXPECT_THROW(last_token_indices(Tensor::zeros({2, 3})), Error);
}

}  // namespace
}  // namespace tessera
