// cuBLASLt GEMM (core/cuda/cublaslt_gemm.cpp) against the CPU reference GEMM: exact on small
// integers (every transpose, batch broadcast, alpha/beta, odd shapes, misaligned pointers),
// within the dtype's tolerance on random inputs (every epilogue, large shapes), and the same
// errors for bad arguments. Each test prints the largest error it saw per case.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <string>

#include "core/backend.h"
#include "core/check.h"
#include "core/cuda/cublaslt_gemm.h"
#include "core/cuda/cuda_backend.h"
#include "core/ops/ops.h"
#include "support/gpu.h"

namespace tessera {
namespace {

const Device kGpu = Device::cuda(0);
const Device kCpu = Device::cpu();

// Integers in [-3, 3]: exact in every dtype, and sums over K <= 28 stay exact in bf16.
Tensor small_ints(const Shape& shape, Generator& g, DType dtype) {
  std::vector<float> v = rand(shape, g).to_vector<float>();
  for (float& x : v) x = std::floor(x * 7.0f) - 3.0f;
  return Tensor::from_vector(v, shape).to(dtype);
}

Tensor normal(const Shape& shape, Generator& g, DType dtype, double stddev = 1.0) {
  return scale(randn(shape, g, DType::F64), stddev).to(dtype);
}

// Shape of an operand stored [batch, rows, cols], or transposed [batch, cols, rows].
Shape stored(int64_t batch, int64_t rows, int64_t cols, bool transposed) {
  return transposed ? Shape{batch, cols, rows} : Shape{batch, rows, cols};
}

struct Outputs {
  Tensor c, pre_gelu;
};

// Runs the GEMM on `device` from host tensors. c starts as a copy of c_init when beta != 0 and
// as NaN otherwise (cuBLASLt must not read it); a requested pre_gelu starts as NaN too.
Outputs run_gemm(Device device, const Tensor& a, const Tensor& b, const Tensor& c_init, GemmArgs args,
                 bool want_pre_gelu = false) {
  Tensor c = args.beta != 0.0 ? c_init.to(device).clone() : testing::poisoned(c_init.shape(), c_init.dtype(), device);
  if (args.bias.defined()) args.bias = args.bias.to(device);
  if (want_pre_gelu) args.pre_gelu = testing::poisoned(c_init.shape(), c_init.dtype(), device);
  backend_for(device).gemm(a.to(device), b.to(device), c, args);
  return {c.to(kCpu), want_pre_gelu ? args.pre_gelu.to(kCpu) : Tensor()};
}

// Largest error seen per case, printed when the test ends.
class ErrorLog {
 public:
  explicit ErrorLog(std::string test) : test_(std::move(test)) {}
  ~ErrorLog() {
    for (const auto& [name, err] : worst_) std::printf("[gemm] %s %s: max relative error %.3g\n", test_.c_str(), name.c_str(), err);
  }
  void check(const std::string& name, const Tensor& got, const Tensor& want, double tolerance,
             const std::string& detail) {
    double err = testing::relative_error(got, want);
    EXPECT_LE(err, tolerance) << name << " " << detail;
    double& worst = worst_[name];
    worst = std::max(worst, err);
  }

 private:
  std::string test_;
  std::map<std::string, double> worst_;
};

TEST(GpuGemm, SmallIntegersAreExactForEveryTransposeAndDtype) {
  TS_REQUIRE_GPU();
  ErrorLog log("transposes");
  Generator g(1);
  const int64_t batch = 3, M = 5, N = 6, K = 7;
  for (DType dtype : {DType::F32, DType::BF16, DType::F16, DType::F64}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        Tensor a = small_ints(stored(batch, M, K, ta), g, dtype);
        Tensor b = small_ints(stored(batch, K, N, tb), g, dtype);
        Tensor c = Tensor::zeros({batch, M, N}, dtype);
        GemmArgs args;
        args.trans_a = ta;
        args.trans_b = tb;
        log.check(std::string(dtype_name(dtype)), run_gemm(kGpu, a, b, c, args).c, run_gemm(kCpu, a, b, c, args).c, 0.0,
                  "trans_a " + std::to_string(ta) + " trans_b " + std::to_string(tb));
      }
    }
  }
}

TEST(GpuGemm, BatchOfOneBroadcasts) {
  TS_REQUIRE_GPU();
  ErrorLog log("broadcast");
  Generator g(2);
  const int64_t M = 9, N = 8, K = 11;
  struct Case {
    int64_t batch_a, batch_b, batch;
    bool trans_a, two_d_a;
  };
  // (4, 1, 4, untransposed a) folds the batch into M; the others run as strided batches.
  for (Case cs : {Case{1, 4, 4, false, false}, Case{4, 1, 4, false, false}, Case{4, 1, 4, true, false},
                  Case{1, 1, 3, false, false}, Case{1, 5, 5, false, true}, Case{4, 4, 4, true, false}}) {
    for (DType dtype : {DType::F32, DType::BF16}) {
      Tensor a = small_ints(stored(cs.batch_a, M, K, cs.trans_a), g, dtype);
      if (cs.two_d_a) a = a.view({M, K});
      Tensor b = small_ints({cs.batch_b, K, N}, g, dtype);
      Tensor c = Tensor::zeros({cs.batch, M, N}, dtype);
      GemmArgs args;
      args.trans_a = cs.trans_a;
      log.check(std::string(dtype_name(dtype)), run_gemm(kGpu, a, b, c, args).c, run_gemm(kCpu, a, b, c, args).c, 0.0,
                "batches a " + std::to_string(cs.batch_a) + " b " + std::to_string(cs.batch_b) + " c " +
                    std::to_string(cs.batch));
    }
  }
}

TEST(GpuGemm, AlphaAndBetaScaleAndAccumulateIntoC) {
  TS_REQUIRE_GPU();
  ErrorLog log("alpha-beta");
  Generator g(3);
  for (DType dtype : {DType::F32, DType::BF16, DType::F64}) {
    for (auto [alpha, beta] : {std::pair{1.0, 1.0}, std::pair{0.5, -2.0}, std::pair{-1.0, 0.0}}) {
      Tensor a = small_ints({2, 6, 10}, g, dtype);
      Tensor b = small_ints({2, 7, 10}, g, dtype);
      Tensor c = small_ints({2, 6, 7}, g, dtype);
      GemmArgs args;
      args.trans_b = true;
      args.alpha = alpha;
      args.beta = beta;
      log.check(std::string(dtype_name(dtype)), run_gemm(kGpu, a, b, c, args).c, run_gemm(kCpu, a, b, c, args).c, 0.0,
                "alpha " + std::to_string(alpha) + " beta " + std::to_string(beta));
    }
  }
}

TEST(GpuGemm, EveryEpilogueMatchesTheCpu) {
  TS_REQUIRE_GPU();
  ErrorLog log("epilogues");
  Generator g(4);
  const int64_t M = 33, K = 64;
  for (DType dtype : {DType::F32, DType::BF16, DType::F16, DType::F64}) {
    for (GemmEpilogue epilogue : {GemmEpilogue::None, GemmEpilogue::Bias, GemmEpilogue::BiasGelu, GemmEpilogue::Gelu}) {
      bool gelu = epilogue == GemmEpilogue::BiasGelu || epilogue == GemmEpilogue::Gelu;
      // N = 37 makes cuBLASLt write the pre-activation into a padded buffer; batch_b = 1
      // folds the batch into M, batch_b = 2 runs a strided batch.
      for (int64_t N : {40, 37}) {
        for (int64_t batch_b : {1, 2}) {
          for (bool want_pre : gelu ? std::vector<bool>{false, true} : std::vector<bool>{false}) {
            Tensor a = normal({2, M, K}, g, dtype, 0.25);
            Tensor b = normal({batch_b, K, N}, g, dtype, 0.25);
            Tensor c = Tensor::zeros({2, M, N}, dtype);
            GemmArgs args;
            args.epilogue = epilogue;
            if (epilogue == GemmEpilogue::Bias || epilogue == GemmEpilogue::BiasGelu) args.bias = normal({N}, g, dtype);
            Outputs got = run_gemm(kGpu, a, b, c, args, want_pre);
            Outputs want = run_gemm(kCpu, a, b, c, args, want_pre);
            std::string name = std::string(dtype_name(dtype)) + " " +
                               (epilogue == GemmEpilogue::None       ? "none"
                                : epilogue == GemmEpilogue::Bias     ? "bias"
                                : epilogue == GemmEpilogue::BiasGelu ? "bias+gelu"
                                                                     : "gelu");
            std::string detail = "N " + std::to_string(N) + " batch_b " + std::to_string(batch_b);
            log.check(name, got.c, want.c, testing::tolerance_for(dtype), detail);
            if (want_pre) log.check(name + " pre_gelu", got.pre_gelu, want.pre_gelu, testing::tolerance_for(dtype), detail);
          }
        }
      }
    }
  }
}

// The GELU gradient fused into the GEMM (the backward of linear_of_gelu): cuBLASLt's DGELU
// epilogue reads the saved pre-activation; N = 37 reads it through a padded copy.
TEST(GpuGemm, DgeluEpilogueMatchesTheCpu) {
  TS_REQUIRE_GPU();
  ErrorLog log("dgelu epilogue");
  Generator g(6);
  const int64_t M = 33, K = 64;
  for (DType dtype : {DType::F32, DType::BF16, DType::F16, DType::F64}) {
    for (int64_t N : {40, 37}) {
      for (int64_t batch_b : {1, 2}) {
        Tensor a = normal({2, M, K}, g, dtype, 0.25), b = normal({batch_b, K, N}, g, dtype, 0.25);
        Tensor pre = normal({2, M, N}, g, dtype, 2.0);
        auto run = [&](Device device) {
          GemmArgs args;
          args.epilogue = GemmEpilogue::DGelu;
          args.pre_gelu = pre.to(device);
          Tensor c = testing::poisoned({2, M, N}, dtype, device);
          backend_for(device).gemm(a.to(device), b.to(device), c, args);
          return c.to(kCpu);
        };
        log.check(std::string(dtype_name(dtype)) + " dgelu", run(kGpu), run(kCpu), testing::tolerance_for(dtype),
                  "N " + std::to_string(N) + " batch_b " + std::to_string(batch_b));
      }
    }
  }
}

TEST(GpuGemm, OddShapesMatchTheCpu) {
  TS_REQUIRE_GPU();
  ErrorLog log("odd shapes");
  Generator g(5);
  struct Case {
    int64_t M, N, K;
  };
  for (DType dtype : {DType::F32, DType::BF16}) {
    for (Case cs : {Case{1, 1, 7}, Case{1, 5, 1}, Case{7, 1, 3}, Case{3, 129, 5}, Case{130, 3, 9}, Case{4, 5, 0}}) {
      for (GemmEpilogue epilogue : {GemmEpilogue::None, GemmEpilogue::Bias}) {
        Tensor a = small_ints({1, cs.M, cs.K}, g, dtype);
        Tensor b = small_ints({1, cs.K, cs.N}, g, dtype);
        Tensor c = small_ints({1, cs.M, cs.N}, g, dtype);
        GemmArgs args;
        args.epilogue = epilogue;
        if (epilogue == GemmEpilogue::Bias) args.bias = small_ints({cs.N}, g, dtype);
        else args.beta = 1.0;  // with K = 0: c is left as it was
        log.check(std::string(dtype_name(dtype)), run_gemm(kGpu, a, b, c, args).c, run_gemm(kCpu, a, b, c, args).c, 0.0,
                  "M " + std::to_string(cs.M) + " N " + std::to_string(cs.N) + " K " + std::to_string(cs.K));
      }
    }
  }
}

TEST(GpuGemm, LargeRandomShapesMatchTheCpu) {
  TS_REQUIRE_GPU();
  ErrorLog log("large");
  Generator g(6);
  const int64_t M = 512, N = 384, K = 1024;
  for (DType dtype : {DType::F32, DType::BF16}) {
    for (bool ta : {false, true}) {
      for (bool tb : {false, true}) {
        Tensor a = normal(stored(1, M, K, ta), g, dtype);
        Tensor b = normal(stored(1, K, N, tb), g, dtype);
        Tensor c = Tensor::zeros({1, M, N}, dtype);
        GemmArgs args;
        args.trans_a = ta;
        args.trans_b = tb;
        log.check(std::string(dtype_name(dtype)), run_gemm(kGpu, a, b, c, args).c, run_gemm(kCpu, a, b, c, args).c,
                  testing::tolerance_for(dtype), "trans_a " + std::to_string(ta) + " trans_b " + std::to_string(tb));
      }
    }
  }
  // A GPT-2 MLP up-projection tile: x [1024, 768] @ W^T with W [3072, 768], bias and GELU.
  for (DType dtype : {DType::F32, DType::BF16}) {
    Tensor x = normal({1, 1024, 768}, g, dtype);
    Tensor w = normal({1, 3072, 768}, g, dtype, 0.02);
    Tensor c = Tensor::zeros({1, 1024, 3072}, dtype);
    GemmArgs args;
    args.trans_b = true;
    args.epilogue = GemmEpilogue::BiasGelu;
    args.bias = normal({3072}, g, dtype, 0.02);
    Outputs got = run_gemm(kGpu, x, w, c, args, true), want = run_gemm(kCpu, x, w, c, args, true);
    std::string name = std::string(dtype_name(dtype)) + " mlp bias+gelu";
    log.check(name, got.c, want.c, testing::tolerance_for(dtype), "");
    log.check(name + " pre_gelu", got.pre_gelu, want.pre_gelu, testing::tolerance_for(dtype), "");
  }
}

TEST(GpuGemm, HeuristicIsAskedOncePerConfigurationAndAlignment) {
  TS_REQUIRE_GPU();
  Generator g(7);
  CudaBackend& backend = cuda_backend(0);
  CublasLtGemm gemm(0, backend.stream());
  const int64_t M = 16, N = 24, K = 8;
  Tensor a = small_ints({1, M, K}, g, DType::BF16), b = small_ints({1, K, N}, g, DType::BF16);
  Tensor want = run_gemm(kCpu, a, b, Tensor::zeros({1, M, N}, DType::BF16), GemmArgs{}).c;
  auto run = [&](const Tensor& a_gpu) {
    Tensor c = testing::poisoned({1, M, N}, DType::BF16, kGpu);
    gemm.run(a_gpu, b.to(kGpu), c, GemmArgs{});
    return c.to(kCpu);
  };
  Tensor a_gpu = a.to(kGpu);
  EXPECT_EQ(testing::relative_error(run(a_gpu), want), 0.0);
  EXPECT_EQ(gemm.plan_count(), 1u);
  EXPECT_EQ(testing::relative_error(run(a_gpu), want), 0.0);
  EXPECT_EQ(gemm.plan_count(), 1u);
  // The same values one element into a buffer: 2-byte aligned, so a plan of its own.
  Tensor shifted = Tensor::zeros({M * K + 1}, DType::BF16, kGpu);
  shifted.narrow(0, 1, M * K).copy_(a_gpu.view({M * K}));
  EXPECT_EQ(testing::relative_error(run(shifted.narrow(0, 1, M * K).view({1, M, K})), want), 0.0);
  EXPECT_EQ(gemm.plan_count(), 2u);
}

TEST(GpuGemm, BadArgumentsThrow) {
  TS_REQUIRE_GPU();
  Backend& gpu = backend_for(kGpu);
  auto t = [](const Shape& shape, DType dtype = DType::F32, Device device = kGpu) {
    return Tensor::zeros(shape, dtype, device);
  };
  auto bias_args = [&](GemmEpilogue epilogue, const Tensor& bias) {
    GemmArgs args;
    args.epilogue = epilogue;
    args.bias = bias;
    return args;
  };
  const std::vector<std::pair<std::string, std::function<void()>>> cases = {
      {"inner dims", [&] { gpu.gemm(t({2, 3}), t({4, 5}), t({2, 5}), {}); }},
      {"output shape", [&] { gpu.gemm(t({2, 3}), t({3, 5}), t({2, 6}), {}); }},
      {"dtypes", [&] { gpu.gemm(t({2, 3}), t({3, 5}, DType::BF16), t({2, 5}), {}); }},
      {"integer dtype", [&] { gpu.gemm(t({2, 3}, DType::I32), t({3, 5}, DType::I32), t({2, 5}, DType::I32), {}); }},
      {"batch counts", [&] { gpu.gemm(t({2, 2, 3}), t({1, 3, 5}), t({3, 2, 5}), {}); }},
      {"4-D operand", [&] { gpu.gemm(t({1, 1, 2, 3}), t({3, 5}), t({2, 5}), {}); }},
      {"non-contiguous", [&] { gpu.gemm(t({3, 2}).transpose(0, 1), t({3, 5}), t({2, 5}), {}); }},
      {"operand on the cpu", [&] { gpu.gemm(t({2, 3}, DType::F32, kCpu), t({3, 5}), t({2, 5}), {}); }},
      {"epilogue with beta", [&] {
         GemmArgs args = bias_args(GemmEpilogue::Bias, t({5}));
         args.beta = 1.0;
         gpu.gemm(t({2, 3}), t({3, 5}), t({2, 5}), args);
       }},
      {"missing bias", [&] { gpu.gemm(t({2, 3}), t({3, 5}), t({2, 5}), bias_args(GemmEpilogue::BiasGelu, {})); }},
      {"bias shape", [&] { gpu.gemm(t({2, 3}), t({3, 5}), t({2, 5}), bias_args(GemmEpilogue::Bias, t({2}))); }},
      {"bias dtype", [&] {
         gpu.gemm(t({2, 3}), t({3, 5}), t({2, 5}), bias_args(GemmEpilogue::Bias, t({5}, DType::BF16)));
       }},
      {"bias on the cpu", [&] {
         gpu.gemm(t({2, 3}), t({3, 5}), t({2, 5}), bias_args(GemmEpilogue::Bias, t({5}, DType::F32, kCpu)));
       }},
      {"pre_gelu shape", [&] {
         GemmArgs args;
         args.epilogue = GemmEpilogue::Gelu;
         args.pre_gelu = t({5, 2});
         gpu.gemm(t({2, 3}), t({3, 5}), t({2, 5}), args);
       }},
  };
  for (const auto& [name, call] : cases) EXPECT_THROW(call(), Error) << name;
}

}  // namespace
}  // namespace tessera
