// Bad input raises tessera::Error with a message that says what is wrong: the op, and the
// shapes / dtypes / devices involved, spelled the way users see them ("[2, 3]", "f32",
// "cuda:0"). Table-driven: one row per bad call and the substrings its message must contain.
// Device checks use a tensor whose Storage claims cuda:0 but points at a host buffer the test
// owns, so a check that comes too late (after a kernel touched memory) shows up as a changed
// sentinel instead of a crash.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/ops/ops.h"
#include "core/tensor.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

struct ErrorCase {
  std::string name;
  std::function<void()> call;
  std::vector<std::string> message_parts;
};

// Runs each case: it must throw tessera::Error whose message contains every part.
void expect_errors(const std::vector<ErrorCase>& cases) {
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.name);
    try {
      c.call();
      ADD_FAILURE() << c.name << ": no error was raised";
    } catch (const Error& e) {
      for (const std::string& part : c.message_parts) EXPECT_THAT(e.what(), HasSubstr(part));
    } catch (const std::exception& e) {
      ADD_FAILURE() << c.name << ": threw a non-tessera exception: " << e.what();
    }
  }
}

Tensor f32(const Shape& shape) { return Tensor::ones(shape, DType::F32); }

Tensor ids(const std::vector<int64_t>& values) {
  return Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
}

TEST(Errors, ShapeMismatchesNameTheOpAndBothShapes) {
  expect_errors({
      {"add broadcast", [] { add(f32({2, 3}), f32({4})); }, {"add", "[2, 3]", "[4]"}},
      {"sub broadcast", [] { sub(f32({5, 2}), f32({3, 1})); }, {"sub", "[5, 2]", "[3, 1]"}},
      {"mul broadcast", [] { mul(f32({2, 3, 4}), f32({3, 3})); }, {"mul", "[2, 3, 4]", "[3, 3]"}},
      {"matmul inner dim", [] { matmul(f32({2, 3}), f32({4, 5})); }, {"matmul", "[2, 3]", "[4, 5]"}},
      {"batched matmul inner dim", [] { matmul(f32({2, 2, 3}), f32({2, 4, 5})); },
       {"matmul", "[2, 2, 3]", "[2, 4, 5]"}},
      {"matmul 1-D", [] { matmul(f32({3}), f32({3, 2})); }, {"matmul", "[3]", "[3, 2]"}},
      {"linear weight", [] { linear(f32({2, 3}), f32({4, 5})); }, {"linear", "[2, 3]", "[4, 5]"}},
      {"linear bias", [] { linear(f32({2, 3}), f32({4, 3}), f32({5})); }, {"linear", "[4, 3]", "[5]"}},
      {"layer_norm weight", [] { layer_norm(f32({2, 3}), f32({4}), f32({4})); }, {"layer_norm", "[2, 3]", "[4]"}},
      {"layer_norm bias", [] { layer_norm(f32({2, 3}), f32({3}), f32({2})); }, {"layer_norm", "[3]", "[2]"}},
      {"rms_norm weight", [] { rms_norm(f32({2, 3}), f32({2})); }, {"rms_norm", "[2, 3]", "[2]"}},
      {"cross_entropy targets shape", [] { cross_entropy(f32({2, 5}), ids({0, 1, 2})); },
       {"cross_entropy", "[3]", "[2, 5]"}},
      {"cross_entropy targets rank", [] { cross_entropy(f32({2, 3, 5}), ids({0, 1})); },
       {"cross_entropy", "[2]", "[2, 3, 5]"}},
      {"attention H % KV",
       [] { scaled_dot_product_attention(f32({1, 2, 3, 4}), f32({1, 2, 2, 4}), f32({1, 2, 2, 4})); },
       {"attention", "H=3", "KV=2"}},
      {"attention k vs v",
       [] { scaled_dot_product_attention(f32({1, 2, 2, 4}), f32({1, 2, 2, 4}), f32({1, 2, 1, 4})); },
       {"attention", "[1, 2, 2, 4]", "[1, 2, 1, 4]"}},
      {"cat", [] { cat({f32({2, 3}), f32({2, 4})}, 0); }, {"cat", "[2, 3]", "[2, 4]"}},
      {"swiglu", [] { swiglu(f32({2, 3}), f32({2, 4})); }, {"swiglu", "[2, 3]", "[2, 4]"}},
      {"split sizes", [] { split(f32({2, 5}), {2, 2}, 1); }, {"split", "[2, 5]"}},
  });
}

TEST(Errors, OutOfRangeIndicesNameTheOpAndTheIndex) {
  expect_errors({
      {"cross_entropy target", [] { cross_entropy(f32({2, 5}), ids({1, 5})); }, {"cross_entropy", "target 5", "V = 5"}},
      {"cross_entropy negative target", [] { cross_entropy(f32({2, 5}), ids({-3, 0})); },
       {"cross_entropy", "target -3"}},
      {"embedding id", [] { embedding(f32({5, 3}), ids({0, 7})); }, {"embedding", "7", "V = 5"}},
      {"embedding negative id", [] { embedding(f32({5, 3}), ids({-1})); }, {"embedding", "-1"}},
      {"embedding float ids", [] { embedding(f32({5, 3}), f32({2})); }, {"embedding", "f32"}},
  });
}

TEST(Errors, DtypeMismatchesNameBothDtypes) {
  Tensor a = Tensor::ones({2}, DType::F32);
  Tensor b = Tensor::ones({2}, DType::F64);
  expect_errors({
      {"mul", [&] { mul(a, b); }, {"mul", "f32", "f64"}},
      {"add", [&] { add(b, a); }, {"add", "f64", "f32"}},
      {"matmul", [&] { matmul(a.view({1, 2}), b.view({2, 1})); }, {"matmul", "f32", "f64"}},
      {"linear", [&] { linear(a.view({1, 2}), b.view({1, 2})); }, {"linear", "f32", "f64"}},
      {"layer_norm", [&] { layer_norm(a, b, Tensor()); }, {"layer_norm", "f32", "f64"}},
      {"add of integers", [] { add(Tensor::ones({2}, DType::I64), Tensor::ones({2}, DType::I64)); }, {"add", "i64"}},
      {"data<T> of wrong dtype", [&] { (void)a.data<double>(); }, {"data<f64>", "f32"}},
  });
}

// A tensor that claims to live on cuda:0 but whose bytes are a host buffer the test owns.
class FakeCudaTensor : public ::testing::Test {
 protected:
  static constexpr float kSentinel = 1234.5f;
  std::vector<float> buffer_ = std::vector<float>(6, kSentinel);

  Tensor fake(const Shape& shape) {
    auto storage = std::make_shared<Storage>(buffer_.data(), buffer_.size() * sizeof(float), Device::cuda(0), nullptr);
    return make_tensor(storage, shape, contiguous_strides(shape), 0, DType::F32);
  }

  void expect_buffer_untouched() {
    for (float v : buffer_) EXPECT_EQ(v, kSentinel);
  }
};

TEST_F(FakeCudaTensor, DeviceMismatchIsCaughtBeforeAnyKernelRuns) {
  Tensor host = Tensor::full({2, 3}, 7.0);
  Tensor dev = fake({2, 3});
  ASSERT_EQ(dev.device(), Device::cuda(0));
  expect_errors({
      {"add(cpu, cuda)", [&] { add(host, dev); }, {"add", "cpu", "cuda:0"}},
      {"add(cuda, cpu)", [&] { add(dev, host); }, {"add", "cpu", "cuda:0"}},
      {"mul", [&] { mul(host, dev); }, {"mul", "cpu", "cuda:0"}},
      {"matmul", [&] { matmul(host, dev.view({3, 2})); }, {"matmul", "cpu", "cuda:0"}},
      {"linear", [&] { linear(host, dev); }, {"linear", "cpu", "cuda:0"}},
      {"layer_norm", [&] { layer_norm(host, dev.view({6}).narrow(0, 0, 3), Tensor()); },
       {"layer_norm", "cpu", "cuda:0"}},
      {"embedding", [&] { embedding(dev.view({3, 2}), ids({0, 1})); }, {"embedding", "cpu", "cuda:0"}},
      {"cat", [&] { cat({host, dev}, 0); }, {"cat", "cpu", "cuda:0"}},
      {"add_", [&] { host.add_(dev); }, {"add_", "cpu", "cuda:0"}},
      {"add_ into cuda", [&] { dev.add_(host); }, {"add_", "cpu", "cuda:0"}},
  });
  expect_buffer_untouched();
  // The host tensor is untouched too.
  for (float v : host.to_vector<float>()) EXPECT_EQ(v, 7.0f);
}

TEST_F(FakeCudaTensor, NoKernelsForADeviceThisBuildLacks) {
  Tensor dev = fake({6});
  expect_errors({
      {"relu", [&] { relu(dev); }, {"cuda:0"}},
      {"fill_", [&] { dev.fill_(0.0); }, {"cuda:0"}},
      {"to_vector", [&] { (void)dev.to_vector<float>(); }, {"cuda:0"}},
  });
  expect_buffer_untouched();
}

TEST(Errors, DeviceParse) {
  struct Good {
    const char* text;
    Device device;
    const char* str;
  };
  for (const Good& g : {Good{"cpu", Device::cpu(), "cpu"}, Good{"cuda", Device::cuda(0), "cuda:0"},
                        Good{"cuda:3", Device::cuda(3), "cuda:3"}, Good{"cuda:12", Device::cuda(12), "cuda:12"}}) {
    EXPECT_EQ(Device::parse(g.text), g.device) << g.text;
    EXPECT_EQ(Device::parse(g.text).str(), g.str);
  }
  std::vector<ErrorCase> cases;
  for (std::string bad :
       {"", "gpu", "CPU", "cuda:", "cuda:-1", "cuda:1x", "cuda:+1", "cuda: 1", "cuda0", "cpu:0", "cuda:99999999999"}) {
    cases.push_back({"parse '" + bad + "'", [bad] { Device::parse(bad); }, {"invalid device '" + bad + "'"}});
  }
  expect_errors(cases);
}

TEST(Errors, DtypeFromNameNamesTheBadName) {
  expect_errors({{"float8", [] { dtype_from_name("float8"); }, {"unknown dtype 'float8'", "bf16"}}});
}

TEST(Errors, InvalidViews) {
  Tensor t = f32({2, 3});
  expect_errors({
      {"permute too few dims", [&] { t.permute({0}); }, {"permute", "[2, 3]"}},
      {"permute repeated dim", [&] { t.permute({1, 1}); }, {"permute", "repeated"}},
      {"permute dim out of range", [&] { t.permute({0, 2}); }, {"permute", "dim 2", "out of range"}},
      {"transpose out of range", [&] { t.transpose(0, -3); }, {"transpose", "-3"}},
      {"narrow past the end", [&] { t.narrow(1, 2, 3); }, {"narrow", "[2, 5)", "[2, 3]"}},
      {"narrow negative start", [&] { t.narrow(0, -1, 1); }, {"narrow", "[2, 3]"}},
      {"narrow bad dim", [&] { t.narrow(2, 0, 1); }, {"narrow", "dim 2"}},
      {"expand incompatible", [&] { t.expand({2, 4}); }, {"expand", "[2, 3]", "[2, 4]"}},
      {"expand to fewer dims", [&] { t.expand({3}); }, {"expand", "[2, 3]", "[3]"}},
      {"squeeze a dim that is not 1", [&] { t.squeeze(0); }, {"squeeze", "[2, 3]"}},
      {"unsqueeze out of range", [&] { t.unsqueeze(4); }, {"unsqueeze", "4"}},
      {"view wrong numel", [&] { t.view({4}); }, {"view", "[2, 3]", "[4]"}},
      {"reshape two -1", [&] { t.reshape({-1, -1}); }, {"only one dimension can be -1"}},
      {"view of a non-contiguous tensor", [&] { t.transpose(0, 1).view({6}); }, {"view", "reshape"}},
      {"item of many", [&] { t.item(); }, {"item", "[2, 3]"}},
      {"size out of range", [&] { t.size(2); }, {"size", "2"}},
  });
}

TEST(Errors, ErrorsCarryFileAndLine) {
  try {
    add(f32({2}), f32({3}));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(".cpp:"));
    EXPECT_THAT(e.what(), HasSubstr("failed at"));
  }
}

}  // namespace
}  // namespace tessera
