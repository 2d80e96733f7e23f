// cuDNN fused attention (forward: out and lse; backward: dL_dq, dL_dk, dL_dv) against the CPU
// reference kernels, run in f32 on the same bf16/f16-rounded inputs; bad inputs; plan and
// workspace reuse; and a speed print (TFLOP/s counting only the unmasked half for causal).
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <future>
#include <limits>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/check.h"
#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_check.h"
#include "core/ops/ops.h"
#include "core/ops/random_ops.h"
#include "support/gpu.h"

namespace tessera {
namespace {

const Device kGpu = Device::cuda(0);
const Device kCpu = Device::cpu();

struct Case {
  int64_t B, T, H, KV, D;  // T: query positions
  bool causal;
  DType dtype = DType::BF16;
  int64_t Tk = 0;  // key positions (0: T); the queries are the last T of them

  int64_t keys() const { return Tk > 0 ? Tk : T; }
  std::string name() const {
    return detail::concat("B=", B, " T=", T, " Tk=", keys(), " H=", H, " KV=", KV, " D=", D,
                          causal ? " causal " : " full ", dtype_name(dtype));
  }
};

// Random normal inputs, drawn on the host (the GPU test needs only attention and copies).
Tensor host_randn(const Shape& shape, Generator& g, DType dtype) { return randn(shape, g).to(dtype); }

// Inputs (rounded to the case's dtype, on the host) and the GPU results.
struct Run {
  Case c{};
  double scale = 1.0;
  Tensor q, k, v, dout;                             // host, c.dtype
  Tensor out, lse, dq, dk, dv;                      // GPU results, copied to the host
  Tensor out_ref, lse_ref, dq_ref, dk_ref, dv_ref;  // CPU reference, f32
};

Run run_on_gpu(const Case& c, uint64_t seed) {
  Generator g(seed);
  Run r;
  r.c = c;
  r.scale = 1.0 / std::sqrt(static_cast<double>(c.D));
  r.q = host_randn({c.B, c.T, c.H, c.D}, g, c.dtype);
  r.k = host_randn({c.B, c.keys(), c.KV, c.D}, g, c.dtype);
  r.v = host_randn({c.B, c.keys(), c.KV, c.D}, g, c.dtype);
  r.dout = host_randn({c.B, c.T, c.H, c.D}, g, c.dtype);
  Tensor q = r.q.to(kGpu), k = r.k.to(kGpu), v = r.v.to(kGpu), dout = r.dout.to(kGpu);
  Tensor out = testing::poisoned({c.B, c.T, c.H, c.D}, c.dtype, kGpu);
  Tensor lse = testing::poisoned({c.B, c.H, c.T}, DType::F32, kGpu);
  Backend& gpu = backend_for(kGpu);
  gpu.attention(q, k, v, c.causal, r.scale, out, lse);
  Tensor dq = testing::poisoned(q.shape(), c.dtype, kGpu);
  Tensor dk = testing::poisoned(k.shape(), c.dtype, kGpu);
  Tensor dv = testing::poisoned(v.shape(), c.dtype, kGpu);
  gpu.attention_backward(q, k, v, out, lse, dout, c.causal, r.scale, dq, dk, dv);
  r.out = out.to(kCpu);
  r.lse = lse.to(kCpu);
  r.dq = dq.to(kCpu);
  r.dk = dk.to(kCpu);
  r.dv = dv.to(kCpu);
  // f32 copies for the reference, made here (the reference itself may run on another thread).
  r.q = r.q.to(DType::F32);
  r.k = r.k.to(DType::F32);
  r.v = r.v.to(DType::F32);
  r.dout = r.dout.to(DType::F32);
  r.out_ref = Tensor::empty(r.q.shape());
  r.lse_ref = Tensor::empty({c.B, c.H, c.T});
  r.dq_ref = Tensor::empty(r.q.shape());
  r.dk_ref = Tensor::empty(r.k.shape());
  r.dv_ref = Tensor::empty(r.v.shape());
  return r;
}

// The CPU reference kernels on the f32 copies (touches only r's tensors: thread-safe).
void run_reference(Run& r) {
  Backend& cpu = backend_for(kCpu);
  cpu.attention(r.q, r.k, r.v, r.c.causal, r.scale, r.out_ref, r.lse_ref);
  cpu.attention_backward(r.q, r.k, r.v, r.out_ref, r.lse_ref, r.dout, r.c.causal, r.scale, r.dq_ref, r.dk_ref,
                         r.dv_ref);
}

// The worst errors seen, printed at the end of each test for the record.
struct MaxErrors {
  double out = 0, lse = 0, dq = 0, dk = 0, dv = 0;
  void print(const char* what) const {
    std::printf("[attention] %s max relative errors: out %.2e lse %.2e dq %.2e dk %.2e dv %.2e\n", what, out, lse, dq,
                dk, dv);
  }
};

// Normwise relative error; where the reference is exactly zero (dQ and dK at Tk = 1: one key,
// so the softmax is constant and its gradient vanishes) relative error means nothing, and the
// largest |got| is returned instead (rounding noise, ~1e-7 here).
double gradient_error(const Tensor& got, const Tensor& want) {
  const std::vector<float> w = want.to_vector<float>();
  if (std::any_of(w.begin(), w.end(), [](float x) { return x != 0.0f; })) return testing::relative_error(got, want);
  double largest = 0.0;
  for (float x : got.to_vector<float>()) {
    if (std::isnan(x)) return std::numeric_limits<double>::infinity();
    largest = std::max(largest, std::fabs(static_cast<double>(x)));
  }
  return largest;
}

void compare(const Run& r, MaxErrors& worst) {
  const double tol = testing::tolerance_for(r.c.dtype);
  const double lse_tol = 1e-3;  // f32 statistics from the same rounded inputs
  const double e_out = testing::relative_error(r.out.to(DType::F32), r.out_ref);
  const double e_lse = testing::relative_error(r.lse, r.lse_ref);
  const double e_dq = gradient_error(r.dq.to(DType::F32), r.dq_ref);
  const double e_dk = gradient_error(r.dk.to(DType::F32), r.dk_ref);
  const double e_dv = gradient_error(r.dv.to(DType::F32), r.dv_ref);
  EXPECT_LE(e_out, tol) << r.c.name();
  EXPECT_LE(e_lse, lse_tol) << r.c.name();
  EXPECT_LE(e_dq, tol) << r.c.name();
  EXPECT_LE(e_dk, tol) << r.c.name();
  EXPECT_LE(e_dv, tol) << r.c.name();
  worst.out = std::max(worst.out, e_out);
  worst.lse = std::max(worst.lse, e_lse);
  worst.dq = std::max(worst.dq, e_dq);
  worst.dk = std::max(worst.dk, e_dk);
  worst.dv = std::max(worst.dv, e_dv);
}

// Every (T, D, causal) for MHA and GQA heads.
std::vector<Case> cases(const std::vector<int64_t>& lengths, Case mha, Case gqa) {
  std::vector<Case> all;
  for (int64_t T : lengths) {
    for (int64_t D : {64, 128}) {
      for (bool causal : {true, false}) {
        for (Case c : {mha, gqa}) {
          c.T = T;
          c.D = D;
          c.causal = causal;
          all.push_back(c);
        }
      }
    }
  }
  return all;
}

// GPU runs one after another; the (slow, single-threaded) CPU references in parallel.
void check_cases(const std::vector<Case>& all, const char* what) {
  std::vector<Run> runs;
  uint64_t seed = 100;
  for (const Case& c : all) runs.push_back(run_on_gpu(c, seed++));
  std::vector<std::future<void>> references;
  for (Run& r : runs) references.push_back(std::async(std::launch::async, run_reference, std::ref(r)));
  for (auto& f : references) f.get();
  MaxErrors worst;
  for (const Run& r : runs) compare(r, worst);
  worst.print(what);
}

TEST(GpuAttention, MatchesCpuForShortSequences) {
  TS_REQUIRE_GPU();
  check_cases(cases({1, 17, 128}, {2, 0, 4, 4, 0, false}, {2, 0, 8, 2, 0, false}), "bf16 T in {1, 17, 128}");
}

TEST(GpuAttention, MatchesCpuForLongSequences) {
  TS_REQUIRE_GPU();
  // The CPU reference is O(T^2) per head: few heads here.
  check_cases(cases({1024, 2048}, {1, 0, 2, 2, 0, false}, {1, 0, 2, 1, 0, false}), "bf16 T in {1024, 2048}");
}

TEST(GpuAttention, MatchesCpuInHalfPrecision) {
  TS_REQUIRE_GPU();
  check_cases({{2, 128, 8, 2, 64, true, DType::F16},
               {1, 17, 4, 4, 128, false, DType::F16},
               {1, 1024, 2, 1, 128, true, DType::F16}},
              "f16");
}

TEST(GpuAttention, MatchesCpuForOtherHeadDims) {
  TS_REQUIRE_GPU();
  check_cases({{2, 77, 4, 2, 32, true},
               {2, 77, 4, 2, 32, false},
               {1, 130, 4, 4, 96, true},
               {1, 130, 2, 1, 256, true},
               {1, 130, 2, 1, 256, false}},
              "bf16 D in {32, 96, 256}");
}

// Fewer queries than keys, bottom-right aligned (decoding with a KV cache): one query (a decode
// step; causal and not, the same thing for one query) and seven (a chunk appended to a cache;
// non-causal only, the cuDNN path refuses causal 1 < Tq < Tk), MHA and GQA; the backward too.
TEST(GpuAttention, MatchesCpuWithFewerQueriesThanKeys) {
  TS_REQUIRE_GPU();
  std::vector<Case> all;
  for (int64_t T : {1, 7}) {
    for (int64_t Tk : {T + 7, int64_t{130}}) {
      for (bool causal : {true, false}) {
        if (causal && T > 1) continue;
        all.push_back({2, T, 4, 4, 64, causal, DType::BF16, Tk});
        all.push_back({2, T, 8, 2, 128, causal, DType::BF16, Tk});
      }
    }
  }
  all.push_back({1, 1, 4, 1, 64, true, DType::F16, 1024});
  check_cases(all, "bf16/f16 Tq in {1, 7} < Tk");
}

// Prints what a new key count costs: the first call at each length finalizes a cuDNN plan (a
// decode loop meets a new length every step), the second reuses it.
TEST(GpuAttention, DecodeStepPlanCostPrint) {
  TS_REQUIRE_GPU();
  CudaBackend& gpu = cuda_backend(0);
  Generator g(13);
  const int64_t H = 12, D = 64;
  Tensor q = host_randn({1, 1, H, D}, g, DType::BF16).to(kGpu);
  Tensor out = Tensor::empty(q.shape(), DType::BF16, kGpu), lse = Tensor::empty({1, H, 1}, DType::F32, kGpu);
  for (int64_t Tk : {300, 301, 302}) {
    Tensor k = host_randn({1, Tk, H, D}, g, DType::BF16).to(kGpu);
    Tensor v = host_randn({1, Tk, H, D}, g, DType::BF16).to(kGpu);
    auto call = [&] {
      const auto start = std::chrono::steady_clock::now();
      gpu.attention(q, k, v, true, 0.125, out, lse);
      TS_CUDA_CHECK(cudaStreamSynchronize(gpu.stream()));
      return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    };
    const double first = call(), second = call();
    std::printf("[attention] decode step Tq=1 Tk=%lld: first call (plan) %.1f ms, second %.3f ms\n",
                static_cast<long long>(Tk), first, second);
  }
}

// q, k and v as slices of one packed [B, T, H, 3, D] projection (GPT-2's QKV layout) are read in
// place through their strides, and packed_qkv_attention also writes their gradients in place into
// the packed gradient; the output and the packed gradient equal those of contiguous copies of the
// same slices.
TEST(GpuAttention, PackedQkvSlicesMatchContiguousCopies) {
  TS_REQUIRE_GPU();
  Generator g(11);
  const int64_t B = 2, T = 256, H = 4, D = 64;
  Tensor packed_host = host_randn({B, T, H, 3, D}, g, DType::BF16);
  Tensor dout_host = host_randn({B, T, H, D}, g, DType::BF16);
  auto run = [&](bool copies) {
    Tensor qkv = packed_host.to(kGpu);
    qkv.set_requires_grad(true);
    if (!copies) {
      Tensor out = packed_qkv_attention(qkv, /*causal=*/true);
      out.backward(dout_host.to(kGpu));
      return std::make_pair(out.to(kCpu), qkv.grad().to(kCpu));
    }
    std::vector<Tensor> parts = split(qkv, {1, 1, 1}, 3);
    std::vector<Tensor> qkv_parts;
    for (const Tensor& part : parts) qkv_parts.push_back(copies ? part.squeeze(3).contiguous() : part.squeeze(3));
    EXPECT_EQ(qkv_parts[1].is_contiguous(), copies);
    Tensor out = scaled_dot_product_attention(qkv_parts[0], qkv_parts[1], qkv_parts[2], /*causal=*/true);
    out.backward(dout_host.to(kGpu));
    return std::make_pair(out.to(kCpu), qkv.grad().to(kCpu));
  };
  auto [out_packed, grad_packed] = run(false);
  auto [out_copies, grad_copies] = run(true);
  const double out_error = testing::relative_error(out_packed, out_copies);
  const double grad_error = testing::relative_error(grad_packed, grad_copies);
  std::printf("[attention] packed qkv slices vs contiguous copies: out %.2e, d(qkv) %.2e\n", out_error, grad_error);
  EXPECT_LE(out_error, 1e-2);
  EXPECT_LE(grad_error, 1e-2);
}

TEST(GpuAttention, RepeatedCallsReusePlansAndMemory) {
  TS_REQUIRE_GPU();
  const Case c{2, 256, 8, 2, 128, true};
  Generator g(7);
  Tensor q = host_randn({c.B, c.T, c.H, c.D}, g, DType::BF16).to(kGpu);
  Tensor k = host_randn({c.B, c.T, c.KV, c.D}, g, DType::BF16).to(kGpu);
  Tensor v = host_randn({c.B, c.T, c.KV, c.D}, g, DType::BF16).to(kGpu);
  Tensor dout = host_randn({c.B, c.T, c.H, c.D}, g, DType::BF16).to(kGpu);
  Tensor out = Tensor::empty(q.shape(), DType::BF16, kGpu), lse = Tensor::empty({c.B, c.H, c.T}, DType::F32, kGpu);
  Tensor dq = Tensor::empty(q.shape(), DType::BF16, kGpu), dk = Tensor::empty(k.shape(), DType::BF16, kGpu),
         dv = Tensor::empty(v.shape(), DType::BF16, kGpu);
  CudaBackend& gpu = cuda_backend(0);
  auto step = [&] {
    gpu.attention(q, k, v, c.causal, 0.125, out, lse);
    gpu.attention_backward(q, k, v, out, lse, dout, c.causal, 0.125, dq, dk, dv);
  };
  step();
  const std::vector<float> first = out.to_vector<float>();
  const uint64_t device_allocations = gpu.caching_allocator().stats().device_allocations;
  for (int i = 0; i < 3; ++i) step();
  EXPECT_EQ(gpu.caching_allocator().stats().device_allocations, device_allocations);
  EXPECT_EQ(out.to_vector<float>(), first) << "the forward is deterministic";
}

// A rank of a multi-GPU job runs on its own GPU while another device may be current (a thread
// that never chose one has device 0): the result on the last GPU equals the one on GPU 0. This
// was a job-wide hang on 2 GPUs: cuDNN launched rank 1's attention into device 0's context.
TEST(GpuAttention, RunsOnAGpuThatIsNotTheCurrentDevice) {
  if (cuda_device_count() < 2) GTEST_SKIP() << "needs 2 GPUs, " << cuda_device_count() << " visible";
  const Case c{2, 128, 4, 2, 64, true};
  Generator g(5);
  Tensor q = host_randn({c.B, c.T, c.H, c.D}, g, DType::BF16), k = host_randn({c.B, c.T, c.KV, c.D}, g, DType::BF16),
         v = host_randn({c.B, c.T, c.KV, c.D}, g, DType::BF16), dout = host_randn({c.B, c.T, c.H, c.D}, g, DType::BF16);
  auto run = [&](Device gpu) {
    TS_CUDA_CHECK(cudaSetDevice(0));
    Tensor out = Tensor::empty(q.shape(), DType::BF16, gpu), lse = Tensor::empty({c.B, c.H, c.T}, DType::F32, gpu);
    Tensor dq = Tensor::empty(q.shape(), DType::BF16, gpu), dk = Tensor::empty(k.shape(), DType::BF16, gpu),
           dv = Tensor::empty(v.shape(), DType::BF16, gpu);
    Tensor qg = q.to(gpu), kg = k.to(gpu), vg = v.to(gpu), doutg = dout.to(gpu);
    Backend& backend = backend_for(gpu);
    backend.attention(qg, kg, vg, c.causal, 0.125, out, lse);
    backend.attention_backward(qg, kg, vg, out, lse, doutg, c.causal, 0.125, dq, dk, dv);
    return std::vector<Tensor>{out.to(kCpu), lse.to(kCpu), dq.to(kCpu), dk.to(kCpu), dv.to(kCpu)};
  };
  std::vector<Tensor> first = run(kGpu), last = run(Device::cuda(cuda_device_count() - 1));
  for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(testing::relative_error(last[i], first[i]), 0.0) << "output " << i;
}

TEST(GpuAttention, RejectsBadInputs) {
  TS_REQUIRE_GPU();
  Backend& gpu = backend_for(kGpu);
  Generator g(9);
  auto make = [&](const Shape& shape, DType dtype = DType::BF16, Device device = kGpu) {
    return host_randn(shape, g, dtype).to(device);
  };
  Tensor q = make({1, 16, 4, 64}), k = make({1, 16, 2, 64}), v = make({1, 16, 2, 64});
  Tensor out = make({1, 16, 4, 64}), lse = make({1, 4, 16}, DType::F32);
  EXPECT_NO_THROW(gpu.attention(q, k, v, true, 0.125, out, lse));
  // f32: cuDNN has no fused f32 attention.
  EXPECT_THROW(
      gpu.attention(q.to(DType::F32), k.to(DType::F32), v.to(DType::F32), true, 0.125, out.to(DType::F32), lse), Error);
  // H not a multiple of KV.
  EXPECT_THROW(gpu.attention(q, make({1, 16, 3, 64}), make({1, 16, 3, 64}), true, 0.125, out, lse), Error);
  // lse in the activations' dtype instead of f32.
  EXPECT_THROW(gpu.attention(q, k, v, true, 0.125, out, make({1, 4, 16})), Error);
  // Mismatched v, q with a strided head dim (strided T and head dims are read in place: see
  // PackedQkvSlicesMatchContiguousCopies), host output, head dims not a multiple of 8 or above 256.
  EXPECT_THROW(gpu.attention(q, k, make({1, 16, 2, 32}), true, 0.125, out, lse), Error);
  EXPECT_NO_THROW(gpu.attention(make({1, 4, 16, 64}).transpose(1, 2), k, v, true, 0.125, out, lse));
  EXPECT_THROW(gpu.attention(make({1, 16, 64, 4}).transpose(2, 3), k, v, true, 0.125, out, lse), Error);
  EXPECT_THROW(gpu.attention(q, k, v, true, 0.125, make({1, 16, 4, 64}, DType::BF16, kCpu), lse), Error);
  EXPECT_THROW(gpu.attention(make({1, 16, 4, 12}), make({1, 16, 2, 12}), make({1, 16, 2, 12}), true, 0.125,
                             make({1, 16, 4, 12}), lse),
               Error);
  EXPECT_THROW(gpu.attention(make({1, 16, 4, 512}), make({1, 16, 2, 512}), make({1, 16, 2, 512}), true, 0.125,
                             make({1, 16, 4, 512}), lse),
               Error);
  // More queries than keys.
  EXPECT_THROW(gpu.attention(q, make({1, 8, 2, 64}), make({1, 8, 2, 64}), true, 0.125, out, lse), Error);
  // Causal with 1 < Tq < Tk (refused, see core/cuda/cudnn_attention.cpp); non-causal runs.
  Tensor k32 = make({1, 32, 2, 64}), v32 = make({1, 32, 2, 64});
  EXPECT_THROW(gpu.attention(q, k32, v32, true, 0.125, out, lse), Error);
  EXPECT_NO_THROW(gpu.attention(q, k32, v32, false, 0.125, out, lse));
  // Backward: wrong dL_dk shape (query heads instead of kv heads).
  Tensor dq = make(q.shape()), dk = make(k.shape()), dv = make(v.shape());
  EXPECT_NO_THROW(gpu.attention_backward(q, k, v, out, lse, out, true, 0.125, dq, dk, dv));
  EXPECT_THROW(gpu.attention_backward(q, k, v, out, lse, out, true, 0.125, dq, make(q.shape()), dv), Error);
}

// Mean milliseconds of `fn` over `iterations` calls on the backend's stream, after warm-up.
template <typename Fn>
double time_ms(CudaBackend& gpu, int iterations, Fn&& fn) {
  for (int i = 0; i < 3; ++i) fn();
  cudaEvent_t start, stop;  // timing events (CudaEvent is made without timing)
  TS_CUDA_CHECK(cudaEventCreate(&start));
  TS_CUDA_CHECK(cudaEventCreate(&stop));
  TS_CUDA_CHECK(cudaEventRecord(start, gpu.stream()));
  for (int i = 0; i < iterations; ++i) fn();
  TS_CUDA_CHECK(cudaEventRecord(stop, gpu.stream()));
  TS_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  TS_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  TS_CUDA_CHECK(cudaEventDestroy(start));
  TS_CUDA_CHECK(cudaEventDestroy(stop));
  return ms / iterations;
}

// Not an assertion: prints achieved TFLOP/s (forward 4 B H T^2 D, halved when causal;
// backward 2.5x the forward) at the benchmark shapes.
TEST(GpuAttention, SpeedPrint) {
  TS_REQUIRE_GPU();
  CudaBackend& gpu = cuda_backend(0);
  struct Shape4 {
    int64_t B, H, T, D;
  };
  for (Shape4 s : {Shape4{8, 16, 2048, 128}, Shape4{16, 12, 1024, 64}, Shape4{4, 16, 4096, 128}}) {
    Generator g(11);
    Tensor q = host_randn({s.B, s.T, s.H, s.D}, g, DType::BF16).to(kGpu);
    Tensor k = host_randn({s.B, s.T, s.H, s.D}, g, DType::BF16).to(kGpu);
    Tensor v = host_randn({s.B, s.T, s.H, s.D}, g, DType::BF16).to(kGpu);
    Tensor dout = host_randn({s.B, s.T, s.H, s.D}, g, DType::BF16).to(kGpu);
    Tensor out = Tensor::empty(q.shape(), DType::BF16, kGpu), lse = Tensor::empty({s.B, s.H, s.T}, DType::F32, kGpu);
    Tensor dq = Tensor::empty(q.shape(), DType::BF16, kGpu), dk = Tensor::empty(q.shape(), DType::BF16, kGpu),
           dv = Tensor::empty(q.shape(), DType::BF16, kGpu);
    const double scale = 1.0 / std::sqrt(static_cast<double>(s.D));
    const double fwd_flops = 4.0 * s.B * s.H * s.T * s.T * s.D / 2.0;
    const double fwd_ms = time_ms(gpu, 20, [&] { gpu.attention(q, k, v, true, scale, out, lse); });
    const double bwd_ms =
        time_ms(gpu, 20, [&] { gpu.attention_backward(q, k, v, out, lse, dout, true, scale, dq, dk, dv); });
    std::printf(
        "[attention] causal bf16 (B,H,T,D)=(%lld,%lld,%lld,%lld): fwd %.3f ms %.0f TFLOP/s, bwd %.3f ms %.0f "
        "TFLOP/s\n",
        static_cast<long long>(s.B), static_cast<long long>(s.H), static_cast<long long>(s.T),
        static_cast<long long>(s.D), fwd_ms, fwd_flops / fwd_ms * 1e-9, bwd_ms, 2.5 * fwd_flops / bwd_ms * 1e-9);
  }
}

}  // namespace
}  // namespace tessera
