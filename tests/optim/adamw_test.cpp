// AdamW against PyTorch's update rule computed by hand in f64; mixed precision (bf16
// parameters with f32 master weights); decay groups; grad_scale; global grad norm and the
// dynamic loss scaler.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "optim/adamw.h"
#include "optim/grad_norm.h"
#include "optim/loss_scaler.h"

namespace tessera {
namespace {

// PyTorch AdamW for one scalar parameter over a sequence of gradients.
double reference_adamw(double p, const std::vector<double>& grads, const AdamWOptions& o, double decay) {
  double m = 0, v = 0;
  for (size_t t = 1; t <= grads.size(); ++t) {
    double g = grads[t - 1];
    p -= o.lr * decay * p;
    m = o.beta1 * m + (1 - o.beta1) * g;
    v = o.beta2 * v + (1 - o.beta2) * g * g;
    double m_hat = m / (1 - std::pow(o.beta1, double(t)));
    double v_hat = v / (1 - std::pow(o.beta2, double(t)));
    p -= o.lr * m_hat / (std::sqrt(v_hat) + o.eps);
  }
  return p;
}

AdamWOptions options() {
  AdamWOptions o;
  o.lr = 0.01;
  o.beta1 = 0.9;
  o.beta2 = 0.95;
  o.eps = 1e-8;
  o.weight_decay = 0.1;
  return o;
}

TEST(AdamW, MatchesPyTorchsRuleWithDecayGroups) {
  Tensor matrix = Tensor::from_vector(std::vector<float>{0.5f, -1.0f, 2.0f, 0.25f}, {2, 2}).set_requires_grad(true);
  Tensor bias = Tensor::from_vector(std::vector<float>{0.3f, -0.7f}, {2}).set_requires_grad(true);
  AdamW opt({matrix, bias}, options());
  std::vector<std::vector<double>> matrix_grads(4), bias_grads(2);
  std::vector<float> m0 = matrix.to_vector<float>(), b0 = bias.to_vector<float>();
  for (int step = 0; step < 3; ++step) {
    std::vector<float> gm = {0.1f * step - 0.2f, 0.3f, -0.5f + step, 0.05f};
    std::vector<float> gb = {1.0f, -0.25f * step};
    matrix.set_grad(Tensor::from_vector(gm, {2, 2}));
    bias.set_grad(Tensor::from_vector(gb, {2}));
    for (size_t i = 0; i < 4; ++i) matrix_grads[i].push_back(gm[i]);
    for (size_t i = 0; i < 2; ++i) bias_grads[i].push_back(gb[i]);
    opt.step();
  }
  std::vector<float> m = matrix.to_vector<float>(), b = bias.to_vector<float>();
  for (size_t i = 0; i < 4; ++i)
    EXPECT_NEAR(m[i], reference_adamw(m0[i], matrix_grads[i], options(), options().weight_decay), 1e-6);
  for (size_t i = 0; i < 2; ++i)  // 1-D parameters take no weight decay
    EXPECT_NEAR(b[i], reference_adamw(b0[i], bias_grads[i], options(), 0.0), 1e-6);
}

TEST(AdamW, Bf16ParametersKeepAnF32MasterAndGetItsRoundedCopy) {
  Generator g(1);
  Tensor init = randn({64}, g);
  Tensor p32 = init.clone().set_requires_grad(true);
  Tensor p16 = init.to(DType::BF16).set_requires_grad(true);
  AdamWOptions o = options();
  o.decay_1d_parameters = true;
  AdamW opt32({p32}, o), opt16({p16}, o);
  // Same f32 master start: the bf16 run's master is the bf16 value widened, so start the
  // f32 run there too.
  {
    NoGradGuard no_grad;
    p32.copy_(init.to(DType::BF16));
  }
  for (int step = 0; step < 5; ++step) {
    Tensor grad = randn({64}, g);
    p32.set_grad(grad);
    p16.set_grad(grad);  // an f32 main-grad buffer on a bf16 parameter
    opt32.step();
    opt16.step();
  }
  EXPECT_EQ(opt16.master_weight(0).to_vector<float>(), p32.to_vector<float>()) << "masters follow the same f32 path";
  EXPECT_EQ(p16.to_vector<float>(), opt16.master_weight(0).to(DType::BF16).to_vector<float>());
}

TEST(AdamW, GradScaleDividesTheGradients) {
  Tensor a = Tensor::from_vector(std::vector<float>{1.0f, 2.0f}, {2}).set_requires_grad(true);
  Tensor b = a.detach().clone().set_requires_grad(true);
  AdamW opt_a({a}, options()), opt_b({b}, options());
  a.set_grad(Tensor::from_vector(std::vector<float>{0.4f, -2.0f}, {2}));
  b.set_grad(Tensor::from_vector(std::vector<float>{0.8f, -4.0f}, {2}));
  opt_a.step();
  opt_b.step(2.0);
  std::vector<float> va = a.to_vector<float>(), vb = b.to_vector<float>();
  EXPECT_NEAR(va[0], vb[0], 1e-7);
  EXPECT_NEAR(va[1], vb[1], 1e-7);
}

TEST(GradNorm, IsTheL2NormOverAllGradients) {
  Tensor a = Tensor::zeros({2}).set_requires_grad(true), b = Tensor::zeros({1}).set_requires_grad(true);
  Tensor unused = Tensor::zeros({3}).set_requires_grad(true);
  a.set_grad(Tensor::from_vector(std::vector<float>{3.0f, 0.0f}, {2}));
  b.set_grad(Tensor::from_vector(std::vector<float>{4.0f}, {1}));
  EXPECT_DOUBLE_EQ(std::sqrt(grad_norm_squared({a, b, unused})), 5.0);
  EXPECT_DOUBLE_EQ(clip_factor(5.0, 1.0), 5.0);
  EXPECT_DOUBLE_EQ(clip_factor(0.5, 1.0), 1.0);
  EXPECT_THROW(clip_factor(std::nan(""), 1.0), Error);
}

TEST(DynamicLossScaler, SkipsNonFiniteStepsBacksOffAndGrows) {
  LossScalerOptions o;
  o.initial_scale = 1024.0;
  o.growth_interval = 2;
  DynamicLossScaler scaler(o);
  Tensor p = Tensor::zeros({2}).set_requires_grad(true);
  p.set_grad(Tensor::from_vector(std::vector<float>{2048.0f, -512.0f}, {2}));
  EXPECT_TRUE(scaler.unscale_and_update({p}));
  EXPECT_THAT(p.grad().to_vector<float>(), ::testing::ElementsAre(2.0f, -0.5f));
  p.set_grad(Tensor::from_vector(std::vector<float>{1.0f, INFINITY}, {2}));
  EXPECT_FALSE(scaler.unscale_and_update({p}));
  EXPECT_EQ(scaler.scale(), 512.0);
  EXPECT_EQ(scaler.skipped_steps(), 1);
  for (int i = 0; i < 2; ++i) {
    p.set_grad(Tensor::from_vector(std::vector<float>{1.0f, 1.0f}, {2}));
    EXPECT_TRUE(scaler.unscale_and_update({p}));
  }
  EXPECT_EQ(scaler.scale(), 1024.0) << "two clean steps grow the scale";
  p.set_grad(Tensor::from_vector(std::vector<float>{NAN, 1.0f}, {2}));
  EXPECT_FALSE(scaler.unscale_and_update({p}));
  EXPECT_EQ(scaler.scale_loss(Tensor::ones({1})).item(), 512.0);
}

}  // namespace
}  // namespace tessera
