// Storage::release/refill and Tensor::set_storage, the core facility of ZeRO-3/FSDP
// (parallel/fsdp.h): a released storage refuses reads through every tensor viewing it, refill
// makes those same tensors (and a backward saved before the release) see the new bytes, and
// set_storage rebinds a parameter into a flat buffer keeping its gradient and hooks.
//
// Compared against: values written out by hand and the gradient of the same op never released.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/check.h"
#include "core/ops/ops.h"
#include "core/tensor.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(StorageRelease, ViewsRefuseReadsUntilRefilled) {
  Tensor t = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {4});
  Tensor view = t.narrow(0, 1, 2);
  t.storage()->release();
  EXPECT_TRUE(t.storage()->released());
  EXPECT_EQ(t.storage()->data(), nullptr);
  EXPECT_EQ(t.storage()->nbytes(), 4 * sizeof(float)) << "the size survives the release";
  EXPECT_THAT(error_of([&] { view.to_vector<float>(); }), HasSubstr("released storage"));
  EXPECT_THAT(error_of([&] { t.storage()->release(); }), HasSubstr("already released"));

  Tensor fresh = Tensor::from_vector(std::vector<float>{5, 6, 7, 8}, {4});
  t.storage()->refill(*fresh.storage());
  EXPECT_FALSE(t.storage()->released());
  EXPECT_TRUE(fresh.storage()->released()) << "the fresh storage gave its memory away";
  EXPECT_EQ(view.to_vector<float>(), (std::vector<float>{6, 7}));
  EXPECT_THAT(error_of([&] { t.storage()->refill(*Tensor::zeros({4}).storage()); }), HasSubstr("release() it first"));
}

TEST(StorageRelease, RefillNeedsTheSameSize) {
  Tensor t = Tensor::zeros({4});
  t.storage()->release();
  EXPECT_THAT(error_of([&] { t.storage()->refill(*Tensor::zeros({3}).storage()); }), HasSubstr("needs 16 bytes"));
}

// A backward recorded before the release reads the refilled bytes: what FSDP relies on when it
// frees a unit's parameters after forward and gathers them again before backward.
TEST(StorageRelease, BackwardSeesRefilledSavedTensors) {
  auto x = [] { return Tensor::from_vector(std::vector<float>{1, 2, 3}, {3}).set_requires_grad(true); };
  Tensor w = Tensor::from_vector(std::vector<float>{4, 5, 6}, {3});
  Tensor x1 = x();
  Tensor y = sum(mul(x1, w));
  w.storage()->release();
  Tensor fresh = Tensor::from_vector(std::vector<float>{7, 8, 9}, {3});
  w.storage()->refill(*fresh.storage());
  y.backward();
  EXPECT_EQ(x1.grad().to_vector<float>(), (std::vector<float>{7, 8, 9})) << "d(x.w)/dx is the refilled w";
}

TEST(SetStorage, RebindsIntoAFlatBufferKeepingAutogradState) {
  Tensor p = Tensor::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2}).set_requires_grad(true);
  int hooks = 0;
  p.register_grad_ready_hook([&](const Tensor&) { ++hooks; });
  Tensor flat = Tensor::from_vector(std::vector<float>{0, 0, 9, 8, 7, 6, 0}, {7});
  p.set_storage(flat.storage(), 2);
  EXPECT_EQ(p.to_vector<float>(), (std::vector<float>{9, 8, 7, 6}));
  EXPECT_EQ(p.shape(), (Shape{2, 2}));
  {
    NoGradGuard no_grad;
    flat.narrow(0, 2, 1).fill_(1.0);
  }
  EXPECT_EQ(p.to_vector<float>()[0], 1.0f) << "p is a view of the flat buffer";
  sum(p).backward();
  EXPECT_EQ(hooks, 1);
  EXPECT_EQ(p.grad().to_vector<float>(), (std::vector<float>{1, 1, 1, 1}));
  EXPECT_THAT(error_of([&] { p.set_storage(flat.storage(), 4); }), HasSubstr("needs 32 bytes"));
  EXPECT_THAT(error_of([&] { p.transpose(0, 1).set_storage(flat.storage(), 0); }), HasSubstr("contiguous"));
}

}  // namespace
}  // namespace tessera
