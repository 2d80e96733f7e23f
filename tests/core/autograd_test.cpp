// The autograd engine's contract: gradients that meet at an input are summed, leaves
// accumulate across passes, saved tensors are released unless retain_graph, no_grad and
// detach cut the graph, grad-ready hooks fire once per pass with the complete gradient and in
// reverse order of use, installed gradient buffers are accumulated into in place.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/ops/ops.h"

namespace tessera {
namespace {

Tensor leaf(std::vector<double> values) {
  Shape shape{static_cast<int64_t>(values.size())};
  return Tensor::from_vector(values, shape).set_requires_grad(true);
}

TEST(Autograd, GradientsMeetingAtAnInputAreSummed) {
  Tensor x = leaf({1.0, -2.0, 3.0});
  // y = x*x + 3x + x  ->  dy/dx = 2x + 4
  Tensor y = add(add(mul(x, x), scale(x, 3.0)), x);
  sum(y).backward();
  EXPECT_THAT(x.grad().to_vector<double>(), ::testing::ElementsAre(6.0, 0.0, 10.0));
}

TEST(Autograd, LeavesAccumulateAcrossBackwardPasses) {
  Tensor x = leaf({1.0, 2.0});
  sum(scale(x, 2.0)).backward();
  sum(mul(x, x)).backward();
  EXPECT_THAT(x.grad().to_vector<double>(), ::testing::ElementsAre(2.0 + 2.0, 2.0 + 4.0));
}

TEST(Autograd, SecondBackwardWithoutRetainGraphNamesTheProblem) {
  Tensor x = leaf({1.0, 2.0});
  Tensor loss = sum(mul(x, x));
  loss.backward();
  try {
    loss.backward();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("retain_graph"));
  }
}

TEST(Autograd, RetainGraphAllowsASecondPass) {
  Tensor x = leaf({1.0, 2.0});
  Tensor loss = sum(mul(x, x));
  loss.backward({}, /*retain_graph=*/true);
  loss.backward();
  EXPECT_THAT(x.grad().to_vector<double>(), ::testing::ElementsAre(4.0, 8.0));
}

TEST(Autograd, SavedTensorsAreReleasedAfterBackward) {
  Tensor x = leaf({1.0, 2.0});
  std::weak_ptr<TensorImpl> saved;
  {
    Tensor h = exp(x);  // mul saves both operands; h lives only in the graph after this scope
    saved = std::weak_ptr<TensorImpl>(std::shared_ptr<TensorImpl>(h.impl(), [](TensorImpl*) {}));
    Tensor loss = sum(mul(h, h));
    loss.backward();
  }
  // The graph and its saved tensors are gone with `loss`: a fresh graph starts clean.
  Tensor loss2 = sum(x);
  loss2.backward();
  EXPECT_NEAR(x.grad().to_vector<double>()[0], 2.0 * std::exp(2.0) + 1.0, 1e-9);
}

TEST(Autograd, NoGradAndDetachRecordNothing) {
  Tensor x = leaf({1.0, 2.0});
  {
    NoGradGuard no_grad;
    Tensor y = mul(x, x);
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.grad_fn(), nullptr);
  }
  Tensor d = x.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.data_ptr(), x.data_ptr());
  Tensor y = add(mul(x, d), x);  // gradient flows only through the non-detached uses
  sum(y).backward();
  EXPECT_THAT(x.grad().to_vector<double>(), ::testing::ElementsAre(2.0, 3.0));
}

TEST(Autograd, BackwardOfATensorWithoutHistoryIsAnError) {
  Tensor x = Tensor::from_vector(std::vector<double>{1.0}, {1});
  EXPECT_THROW(x.backward(), Error);
}

TEST(Autograd, NonScalarBackwardNeedsAGradient) {
  Tensor x = leaf({1.0, 2.0});
  EXPECT_THROW(scale(x, 2.0).backward(), Error);
  scale(x, 2.0).backward(Tensor::from_vector(std::vector<double>{1.0, 10.0}, {2}));
  EXPECT_THAT(x.grad().to_vector<double>(), ::testing::ElementsAre(2.0, 20.0));
}

TEST(Autograd, GradReadyHookFiresOnceWithTheCompleteGradient) {
  Tensor w = leaf({1.0, 2.0});
  std::vector<std::vector<double>> seen;
  w.register_grad_ready_hook([&](const Tensor& p) { seen.push_back(p.grad().to_vector<double>()); });
  // w is used three times; the hook must see the sum of all three contributions, once.
  Tensor loss = sum(add(add(mul(w, w), w), scale(w, 5.0)));
  loss.backward();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_THAT(seen[0], ::testing::ElementsAre(2.0 + 1.0 + 5.0, 4.0 + 1.0 + 5.0));
}

TEST(Autograd, GradReadyHooksFireInReverseOrderOfUse) {
  // Three "layers" applied in order; DDP wants the last layer's gradient first.
  std::vector<Tensor> weights = {leaf({0.5}), leaf({1.5}), leaf({-0.5})};
  std::vector<int> order;
  for (int i = 0; i < 3; ++i) weights[static_cast<size_t>(i)].register_grad_ready_hook([&order, i](const Tensor&) {
    order.push_back(i);
  });
  Tensor h = leaf({2.0});
  for (const Tensor& w : weights) h = tanh(mul(h, w));
  sum(h).backward();
  EXPECT_THAT(order, ::testing::ElementsAre(2, 1, 0));
}

TEST(Autograd, InstalledGradientBufferIsAccumulatedInPlace) {
  Tensor w = leaf({1.0, 2.0, 3.0});
  // A DDP-style flat buffer holding this parameter's gradient at offset 1.
  Tensor bucket = Tensor::zeros({5}, DType::F64);
  Tensor view = bucket.narrow(0, 1, 3);
  w.set_grad(view);
  sum(scale(w, 2.0)).backward();
  sum(scale(w, 3.0)).backward();
  EXPECT_EQ(w.grad().data_ptr(), view.data_ptr());
  EXPECT_THAT(bucket.to_vector<double>(), ::testing::ElementsAre(0.0, 5.0, 5.0, 5.0, 0.0));
}

TEST(Autograd, GradientOfAnUnusedSplitPieceIsZero) {
  Tensor x = leaf({1.0, 2.0, 3.0, 4.0});
  auto pieces = split(x, {1, 2, 1}, 0);
  sum(scale(pieces[1], 3.0)).backward();
  EXPECT_THAT(x.grad().to_vector<double>(), ::testing::ElementsAre(0.0, 3.0, 3.0, 0.0));
}

TEST(Autograd, InPlaceUpdateOfATensorThatNeedsGradIsRefused) {
  Tensor w = leaf({1.0});
  EXPECT_THROW(w.mul_(2.0), Error);
  NoGradGuard no_grad;
  w.mul_(2.0);
  EXPECT_EQ(w.item(), 2.0);
}

}  // namespace
}  // namespace tessera
