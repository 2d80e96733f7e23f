// Activation recomputation: the region runs once in forward without recording and once more
// in backward; gradients (of the inputs and of the parameters used inside) are bitwise equal
// to the plain run, including dropout, whose random draws are replayed. Also: Philox streams
// are reproducible from a seed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "core/autograd/checkpoint.h"
#include "core/autograd/node.h"
#include "core/ops/ops.h"

namespace tessera {
namespace {

struct Params {
  Tensor w1, b1, ln_w, ln_b, w2;
  std::vector<Tensor> all() const { return {w1, b1, ln_w, ln_b, w2}; }
};

Params make_params(uint64_t seed) {
  Generator g(seed);
  auto param = [&](const Shape& shape) { return randn(shape, g).set_requires_grad(true); };
  return {param({16, 8}), param({16}), param({16}), param({16}), param({8, 16})};
}

// A transformer-MLP-like block with dropout.
std::vector<Tensor> block(const Params& p, Generator& dropout_rng, const std::vector<Tensor>& in) {
  Tensor h = gelu(linear(in[0], p.w1, p.b1));
  h = dropout(h, 0.25, dropout_rng);
  h = layer_norm(h, p.ln_w, p.ln_b);
  return {add(linear(h, p.w2), in[0])};
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  std::vector<float> va = a.to_vector<float>(), vb = b.to_vector<float>();
  return va.size() == vb.size() && std::memcmp(va.data(), vb.data(), va.size() * sizeof(float)) == 0;
}

TEST(Checkpoint, GradientsAreBitwiseEqualToThePlainRun) {
  Generator data_rng(5);
  Tensor x_plain = randn({4, 3, 8}, data_rng).set_requires_grad(true);
  Tensor x_ckpt = x_plain.detach().clone().set_requires_grad(true);
  Params plain = make_params(11), recomputed = make_params(11);

  Generator rng_plain(99);
  Tensor loss_plain = sum(square(block(plain, rng_plain, {x_plain})[0]));
  loss_plain.backward();

  Generator rng_ckpt(99);
  int region_runs = 0;
  RegionFn region = [&](const std::vector<Tensor>& in) {
    ++region_runs;
    return block(recomputed, rng_ckpt, in);
  };
  Tensor out = checkpoint(region, {x_ckpt}, {&rng_ckpt})[0];
  EXPECT_EQ(region_runs, 1);
  EXPECT_EQ(out.grad_fn()->name(), "checkpoint") << "the region's own ops must not be recorded";
  Tensor loss_ckpt = sum(square(out));
  EXPECT_EQ(loss_plain.item(), loss_ckpt.item());
  loss_ckpt.backward();
  EXPECT_EQ(region_runs, 2);

  EXPECT_TRUE(bitwise_equal(x_plain.grad(), x_ckpt.grad()));
  for (size_t i = 0; i < plain.all().size(); ++i) {
    EXPECT_TRUE(bitwise_equal(plain.all()[i].grad(), recomputed.all()[i].grad())) << "parameter " << i;
  }
  // The generator continues where the forward left it, as in the plain run.
  EXPECT_EQ(rng_plain.state().offset, rng_ckpt.state().offset);
}

TEST(Checkpoint, WithoutReplayingTheGeneratorDropoutMasksDiffer) {
  // The negative control for the test above: not handing the generator to checkpoint()
  // reruns dropout with a fresh draw, and the gradients differ.
  Generator data_rng(5);
  Tensor x_plain = randn({4, 3, 8}, data_rng).set_requires_grad(true);
  Tensor x_ckpt = x_plain.detach().clone().set_requires_grad(true);
  Params plain = make_params(11), recomputed = make_params(11);
  Generator rng_plain(99), rng_ckpt(99);
  sum(square(block(plain, rng_plain, {x_plain})[0])).backward();
  RegionFn region = [&](const std::vector<Tensor>& in) { return block(recomputed, rng_ckpt, in); };
  sum(square(checkpoint(region, {x_ckpt})[0])).backward();
  EXPECT_FALSE(bitwise_equal(x_plain.grad(), x_ckpt.grad()));
}

TEST(Random, StreamsAreReproducibleFromASeed) {
  Generator a(42), b(42), c(43);
  std::vector<float> first = randn({64}, a).to_vector<float>();
  EXPECT_EQ(first, randn({64}, b).to_vector<float>());
  EXPECT_NE(first, randn({64}, c).to_vector<float>());
  // Successive draws of one generator differ, and rewinding replays them.
  PhiloxState before = a.state();
  std::vector<float> second = randn({64}, a).to_vector<float>();
  EXPECT_NE(first, second);
  a.set_state(before);
  EXPECT_EQ(second, randn({64}, a).to_vector<float>());
}

}  // namespace
}  // namespace tessera
