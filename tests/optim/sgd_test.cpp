// Tests of tessera::Sgd against PyTorch's torch.optim.SGD update rule (dampening 0, no
// Nesterov), written out here in double:
//   d = g + weight_decay * p
//   buf = d                    on the first step with a gradient
//   buf = momentum * buf + d   afterwards
//   p  -= lr * (momentum > 0 ? buf : d)
// Three steps with a different gradient each step, over a table of option sets and dtypes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "optim/sgd.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

const std::vector<double> kInitial = {0.5, -1.25, 2.0, 0.75, -0.3, 1.1};
const std::vector<std::vector<double>> kGrads = {
    {0.1, -0.2, 0.3, 0.05, -0.4, 0.25},
    {-0.3, 0.1, 0.2, -0.15, 0.35, -0.05},
    {0.2, 0.4, -0.1, 0.3, 0.0, -0.6},
};

// The PyTorch rule in double, for every step in kGrads.
std::vector<double> reference_sgd(const SgdOptions& o, std::vector<double> p,
                                  const std::vector<std::vector<double>>& grads) {
  std::vector<double> buf;
  for (const std::vector<double>& g : grads) {
    std::vector<double> d(p.size());
    for (size_t i = 0; i < p.size(); ++i) d[i] = g[i] + o.weight_decay * p[i];
    if (o.momentum > 0.0) {
      if (buf.empty()) {
        buf = d;
      } else {
        for (size_t i = 0; i < p.size(); ++i) buf[i] = o.momentum * buf[i] + d[i];
      }
      d = buf;
    }
    for (size_t i = 0; i < p.size(); ++i) p[i] -= o.lr * d[i];
  }
  return p;
}

struct SgdCase {
  std::string name;
  SgdOptions options;
};

const std::vector<SgdCase> kCases = {
    {"plain", {0.1, 0.0, 0.0}},
    {"momentum", {0.1, 0.9, 0.0}},
    {"weight decay", {0.2, 0.0, 0.1}},
    {"momentum and weight decay", {0.05, 0.9, 0.01}},
    {"large lr, small momentum, large decay", {1.5, 0.3, 0.5}},
};

TEST(Sgd, MatchesPyTorchRuleOverThreeSteps) {
  for (DType dtype : {DType::F64, DType::F32}) {
    for (const SgdCase& c : kCases) {
      SCOPED_TRACE(c.name + " " + std::string(dtype_name(dtype)));
      Tensor p = Tensor::from_vector(kInitial, {2, 3}).to(dtype).set_requires_grad(true);
      Sgd sgd({p}, c.options);
      for (size_t step = 0; step < kGrads.size(); ++step) {
        p.set_grad(Tensor::from_vector(kGrads[step], {2, 3}).to(dtype));
        sgd.step();
        std::vector<std::vector<double>> so_far(kGrads.begin(), kGrads.begin() + static_cast<long>(step) + 1);
        std::vector<double> expected = reference_sgd(c.options, kInitial, so_far);
        std::vector<double> got = p.to_vector<double>();
        double tolerance = dtype == DType::F64 ? 1e-14 : 2e-6;
        for (size_t i = 0; i < expected.size(); ++i) {
          EXPECT_NEAR(got[i], expected[i], tolerance * (1.0 + std::abs(expected[i])))
              << "step " << step + 1 << ", element " << i;
        }
      }
      EXPECT_TRUE(p.requires_grad());
      EXPECT_TRUE(p.is_leaf()) << "the update must not record history";
    }
  }
}

TEST(Sgd, GradientsFromBackwardAndGradLeftUnchanged) {
  // loss = sum(c * p), so dL/dp = c; accumulation is reset between steps by zeroing.
  SgdOptions options{0.1, 0.9, 0.01};
  Tensor p = Tensor::from_vector(kInitial, {6}).to(DType::F64).set_requires_grad(true);
  Sgd sgd({p}, options);
  for (size_t step = 0; step < kGrads.size(); ++step) {
    if (p.grad().defined()) {
      NoGradGuard no_grad;
      Tensor grad = p.grad();  // a handle to the same buffer
      grad.zero_();
    }
    Tensor c = Tensor::from_vector(kGrads[step], {6});
    sum(mul(c, p)).backward();
    sgd.step();
    EXPECT_EQ(p.grad().to_vector<double>(), kGrads[step]) << "step must not change the gradient (weight decay "
                                                             "is added to a copy)";
  }
  std::vector<double> expected = reference_sgd(options, kInitial, kGrads);
  std::vector<double> got = p.to_vector<double>();
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(got[i], expected[i], 1e-14) << i;
}

TEST(Sgd, ParametersWithoutGradAreSkipped) {
  SgdOptions options{0.1, 0.9, 0.1};  // weight decay alone would move a skipped parameter
  Tensor a = Tensor::from_vector(kInitial, {6}).to(DType::F64).set_requires_grad(true);
  Tensor b = Tensor::from_vector(kInitial, {6}).to(DType::F64).set_requires_grad(true);
  Sgd sgd({a, b}, options);
  // b gets no gradient for two steps, then one: its momentum starts at that step.
  for (size_t step = 0; step < kGrads.size(); ++step) {
    a.set_grad(Tensor::from_vector(kGrads[step], {6}));
    if (step == 2) b.set_grad(Tensor::from_vector(kGrads[step], {6}));
    sgd.step();
    if (step < 2) {
      EXPECT_EQ(b.to_vector<double>(), kInitial) << "step " << step + 1;
    }
  }
  std::vector<double> expected_a = reference_sgd(options, kInitial, kGrads);
  std::vector<double> expected_b = reference_sgd(options, kInitial, {kGrads[2]});
  std::vector<double> got_a = a.to_vector<double>(), got_b = b.to_vector<double>();
  for (size_t i = 0; i < kInitial.size(); ++i) {
    EXPECT_NEAR(got_a[i], expected_a[i], 1e-14) << i;
    EXPECT_NEAR(got_b[i], expected_b[i], 1e-14) << i;
  }
}

TEST(Sgd, LearningRateChangeTakesEffectNextStep) {
  SgdOptions options{0.1, 0.0, 0.0};
  Tensor p = Tensor::from_vector(kInitial, {6}).to(DType::F64).set_requires_grad(true);
  Sgd sgd({p}, options);
  EXPECT_EQ(sgd.learning_rate(), 0.1);
  sgd.set_learning_rate(0.025);
  p.set_grad(Tensor::from_vector(kGrads[0], {6}));
  sgd.step();
  std::vector<double> got = p.to_vector<double>();
  for (size_t i = 0; i < kInitial.size(); ++i) EXPECT_NEAR(got[i], kInitial[i] - 0.025 * kGrads[0][i], 1e-15);
}

TEST(Sgd, RejectsBadOptions) {
  struct Bad {
    SgdOptions options;
    std::string message;
  };
  for (const Bad& bad : {Bad{{0.0, 0.0, 0.0}, "lr"}, Bad{{-0.1, 0.0, 0.0}, "lr"}, Bad{{0.1, 1.0, 0.0}, "momentum"},
                         Bad{{0.1, -0.5, 0.0}, "momentum"}}) {
    try {
      Sgd sgd({}, bad.options);
      ADD_FAILURE() << "accepted lr " << bad.options.lr << " momentum " << bad.options.momentum;
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("Sgd"));
      EXPECT_THAT(e.what(), HasSubstr(bad.message));
    }
  }
}

}  // namespace
}  // namespace tessera
