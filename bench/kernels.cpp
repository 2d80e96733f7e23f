// bench/kernels: what each CUDA kernel of a transformer training step achieves at GPT-2-124M
// and Llama-1B shapes, against two ceilings measured on the same GPU in the same run: a bf16
// 8192^3 GEMM through cuBLASLt (fastest of its heuristic's top algorithms) and a 2 GiB
// device-to-device copy.
//  - GEMMs report TFLOP/s (2 M N K), % of the GEMM ceiling, and cuBLASLt's own best for the
//    same shape and epilogue (its top heuristic algorithms, each timed), so "ours / best"
//    reads off how close Backend::gemm comes.
//  - Attention reports TFLOP/s: 4 B H T^2 D forward, 2.5x that backward, halved when causal
//    (only the unmasked half is counted).
//  - Everything else reports GB/s: the bytes the kernel must read and write at least once
//    (the copy ceiling counts read + write the same way), and % of the copy ceiling.
// Times are medians of CUDA-event intervals after warm-up, all on the backend's stream, in
// bf16 (statistics f32). A kernel that throws prints "n/a: <reason>" and the run goes on.
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/cuda/cublas_check.h"
#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/runtime.h"
#include "core/ops/random_ops.h"

namespace tessera::bench {
namespace {

const Device kGpu = Device::cuda(0);
constexpr DType kAct = DType::BF16;  // activations and weights
constexpr size_t kLtWorkspaceBytes = size_t(32) << 20;

// ---- timing ----
class EventTimer {
 public:
  EventTimer(cudaStream_t stream, int max_iters) : stream_(stream), events_(2 * static_cast<size_t>(max_iters)) {
    for (cudaEvent_t& e : events_) TS_CUDA_CHECK(cudaEventCreate(&e));
  }
  ~EventTimer() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;

  // Median milliseconds of `iters` runs of fn after `warmup` runs.
  double median_ms(const std::function<void()>& fn, int iters = 20, int warmup = 3) {
    iters = std::min(iters, static_cast<int>(events_.size() / 2));
    for (int i = 0; i < warmup; ++i) fn();
    for (int i = 0; i < iters; ++i) {
      TS_CUDA_CHECK(cudaEventRecord(events_[2 * i], stream_));
      fn();
      TS_CUDA_CHECK(cudaEventRecord(events_[2 * i + 1], stream_));
    }
    TS_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::vector<float> ms(static_cast<size_t>(iters));
    for (int i = 0; i < iters; ++i) TS_CUDA_CHECK(cudaEventElapsedTime(&ms[i], events_[2 * i], events_[2 * i + 1]));
    std::nth_element(ms.begin(), ms.begin() + iters / 2, ms.end());
    return ms[static_cast<size_t>(iters / 2)];
  }

 private:
  cudaStream_t stream_;
  std::vector<cudaEvent_t> events_;
};

// ---- inputs: N(0, 1) blocks generated once per dtype on the host, tiled by device copies ----
class RandomFill {
 public:
  explicit RandomFill(cudaStream_t stream) : stream_(stream) {}

  Tensor normal(const Shape& shape, DType dtype = kAct) {
    Tensor t = Tensor::empty(shape, dtype, kGpu);
    Tensor& block = blocks_[dtype];
    if (!block.defined()) {
      Generator generator(1000 + static_cast<uint64_t>(dtype));
      block = randn({int64_t(1) << 22}, generator, dtype).to(kGpu);
    }
    size_t total = static_cast<size_t>(t.numel()) * dtype_size(dtype);
    size_t chunk = static_cast<size_t>(block.numel()) * dtype_size(dtype);
    auto* dst = static_cast<char*>(t.data_ptr());
    for (size_t offset = 0; offset < total; offset += chunk)
      TS_CUDA_CHECK(cudaMemcpyAsync(dst + offset, block.data_ptr(), std::min(chunk, total - offset),
                                    cudaMemcpyDeviceToDevice, stream_));
    return t;
  }

  // Integers uniform in [0, bound) (token ids, targets).
  Tensor ids(int64_t n, int64_t bound) {
    Generator generator(7);
    std::vector<float> u = rand({n}, generator).to_vector<float>();
    std::vector<int64_t> v(u.size());
    for (size_t i = 0; i < u.size(); ++i) v[i] = std::min(bound - 1, static_cast<int64_t>(u[i] * double(bound)));
    return Tensor::from_vector(v, {n}, kGpu);
  }

 private:
  cudaStream_t stream_;
  std::map<DType, Tensor> blocks_;
};

// ---- cuBLASLt called directly: the ceiling and "cuBLASLt's own best" per GEMM shape ----
class LtDirect {
 public:
  LtDirect(cudaStream_t stream, EventTimer& timer) : stream_(stream), timer_(timer) {
    TS_CUBLAS_CHECK(cublasLtCreate(&handle_));
    workspace_ = Tensor::empty({static_cast<int64_t>(kLtWorkspaceBytes / 4)}, DType::F32, kGpu);
  }
  ~LtDirect() { cublasLtDestroy(handle_); }
  LtDirect(const LtDirect&) = delete;
  LtDirect& operator=(const LtDirect&) = delete;

  struct Best {
    double ms = 0.0;
    int timed = 0;  // algorithms that ran
  };

  // The fastest of the heuristic's top `count` algorithms for what Backend::gemm(a, b, c,
  // args) computes (bf16, batch 1, row-major; the same column-major mapping as the backend).
  Best best(const Tensor& a, const Tensor& b, const Tensor& c, const GemmArgs& args, int count) {
    int64_t m = c.size(-2), n = c.size(-1), k = args.trans_a ? a.size(-2) : a.size(-1);
    using Desc = std::unique_ptr<cublasLtMatmulDescOpaque_t, decltype(&cublasLtMatmulDescDestroy)>;
    using Layout = std::unique_ptr<cublasLtMatrixLayoutOpaque_t, decltype(&cublasLtMatrixLayoutDestroy)>;
    using Pref = std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, decltype(&cublasLtMatmulPreferenceDestroy)>;
    cublasLtMatmulDesc_t raw_desc = nullptr;
    TS_CUBLAS_CHECK(cublasLtMatmulDescCreate(&raw_desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    Desc desc(raw_desc, &cublasLtMatmulDescDestroy);
    cublasOperation_t op_a = args.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = args.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
    set(raw_desc, CUBLASLT_MATMUL_DESC_TRANSA, op_a);
    set(raw_desc, CUBLASLT_MATMUL_DESC_TRANSB, op_b);
    cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    if (args.epilogue == GemmEpilogue::Bias) epilogue = CUBLASLT_EPILOGUE_BIAS;
    if (args.epilogue == GemmEpilogue::BiasGelu)
      epilogue = args.pre_gelu.defined() ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_BIAS;
    set(raw_desc, CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue);
    if (args.bias.defined()) set(raw_desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, args.bias.data_ptr());
    if (args.pre_gelu.defined()) {
      set(raw_desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, args.pre_gelu.data_ptr());
      set(raw_desc, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, n);
    }
    auto layout = [](int64_t rows, int64_t cols) {
      cublasLtMatrixLayout_t raw = nullptr;
      TS_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&raw, CUDA_R_16BF, static_cast<uint64_t>(rows),
                                                 static_cast<uint64_t>(cols), rows));
      return Layout(raw, &cublasLtMatrixLayoutDestroy);
    };
    Layout la = args.trans_b ? layout(k, n) : layout(n, k);
    Layout lb = args.trans_a ? layout(m, k) : layout(k, m);
    Layout lc = layout(n, m);
    cublasLtMatmulPreference_t raw_pref = nullptr;
    TS_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&raw_pref));
    Pref pref(raw_pref, &cublasLtMatmulPreferenceDestroy);
    uint64_t workspace_bytes = kLtWorkspaceBytes;
    TS_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(raw_pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                         &workspace_bytes, sizeof(workspace_bytes)));
    std::vector<cublasLtMatmulHeuristicResult_t> results(static_cast<size_t>(count));
    int found = 0;
    TS_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(handle_, raw_desc, la.get(), lb.get(), lc.get(), lc.get(), raw_pref,
                                                   count, results.data(), &found));
    float alpha = static_cast<float>(args.alpha), beta = static_cast<float>(args.beta);
    Best best;
    for (int i = 0; i < found; ++i) {
      const cublasLtMatmulAlgo_t* algo = &results[static_cast<size_t>(i)].algo;
      auto call = [&] {
        TS_CUBLAS_CHECK(cublasLtMatmul(handle_, raw_desc, &alpha, b.data_ptr(), la.get(), a.data_ptr(), lb.get(), &beta,
                                       c.data_ptr(), lc.get(), c.data_ptr(), lc.get(), algo, workspace_.data_ptr(),
                                       kLtWorkspaceBytes, stream_));
      };
      try {
        double ms = timer_.median_ms(call, 10, 2);
        if (best.timed == 0 || ms < best.ms) best.ms = ms;
        ++best.timed;
      } catch (const Error&) {
        // An algorithm the heuristic offered but that refuses these operands: skip it.
      }
    }
    TS_CHECK(best.timed > 0, "cuBLASLt offered no algorithm that ran for M ", m, " N ", n, " K ", k);
    return best;
  }

 private:
  template <typename V>
  static void set(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attribute, const V& value) {
    TS_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc, attribute, &value, sizeof(value)));
  }

  cudaStream_t stream_;
  EventTimer& timer_;
  cublasLtHandle_t handle_ = nullptr;
  Tensor workspace_;
};

// ---- the run: ceilings, then per-model tables ----
struct Model {
  const char* name;
  int64_t B, T, C, H, KV, D, FFN, V;
  bool gpt2;  // layer_norm, GELU MLP and biases; otherwise rms_norm, SwiGLU MLP, rope, no biases
};

struct Bench {
  CudaBackend& gpu;
  EventTimer timer;
  RandomFill random;
  LtDirect lt;
  double gemm_ceiling = 0.0;  // TFLOP/s
  double copy_ceiling = 0.0;  // GB/s

  explicit Bench(CudaBackend& backend)
      : gpu(backend), timer(backend.stream(), 64), random(backend.stream()), lt(backend.stream(), timer) {}
};

std::string reason(const std::exception& e) {
  std::string message = e.what();
  message = message.substr(0, message.find(" [check `"));
  message = message.substr(0, message.find('\n'));
  return message.size() > 110 ? message.substr(0, 107) + "..." : message;
}

double tflops(double flops, double ms) { return flops / (ms * 1e-3) / 1e12; }
double gbs(double bytes, double ms) { return bytes / (ms * 1e-3) / 1e9; }

// One GB/s row: bytes moved by one call of fn.
void bandwidth_row(Bench& bench, const Model& model, const std::string& kernel, const std::string& shape,
                   const std::function<double()>& setup_and_bytes, const std::function<void()>& fn) {
  std::printf("%-10s %-30s %-24s ", model.name, kernel.c_str(), shape.c_str());
  try {
    double bytes = setup_and_bytes();
    double ms = bench.timer.median_ms(fn);
    std::printf("%9.3f %9.1f %7.1f%%\n", ms, gbs(bytes, ms), 100.0 * gbs(bytes, ms) / bench.copy_ceiling);
  } catch (const std::exception& e) {
    std::printf("n/a: %s\n", reason(e).c_str());
  }
  std::fflush(stdout);
}

std::string dims(std::initializer_list<int64_t> sizes) {
  std::string s;
  for (int64_t v : sizes) {
    if (!s.empty()) s += 'x';
    s += std::to_string(v);
  }
  return s;
}

void measure_ceilings(Bench& bench) {
  const int64_t S = 8192;
  Tensor a = bench.random.normal({1, S, S}), b = bench.random.normal({1, S, S});
  Tensor c = Tensor::empty({1, S, S}, kAct, kGpu);
  double best_ms = 0.0;
  int timed = 0;
  for (bool trans_b : {false, true}) {
    GemmArgs args;
    args.trans_b = trans_b;
    LtDirect::Best best = bench.lt.best(a, b, c, args, 16);
    if (timed == 0 || best.ms < best_ms) best_ms = best.ms;
    timed += best.timed;
  }
  bench.gemm_ceiling = tflops(2.0 * S * S * S, best_ms);
  std::printf("ceiling  bf16 GEMM 8192^3, cuBLASLt best of %d algorithms (NN and NT): %.1f TFLOP/s (%.3f ms)\n",
              timed, bench.gemm_ceiling, best_ms);
  a = b = c = Tensor();
  bench.gpu.caching_allocator().release_cached();

  const int64_t bytes = int64_t(2) << 30;
  Tensor src = Tensor::empty({bytes / 4}, DType::F32, kGpu), dst = Tensor::empty({bytes / 4}, DType::F32, kGpu);
  double ms = bench.timer.median_ms([&] {
    TS_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), static_cast<size_t>(bytes), cudaMemcpyDeviceToDevice,
                                  bench.gpu.stream()));
  });
  bench.copy_ceiling = gbs(2.0 * double(bytes), ms);
  std::printf("ceiling  device copy of 2 GiB (read + write counted): %.1f GB/s (%.3f ms)\n\n", bench.copy_ceiling, ms);
  bench.gpu.caching_allocator().release_cached();
}

// ---- GEMMs: forward, input-gradient and weight-gradient GEMM of each linear layer ----
struct Linear {
  const char* name;
  int64_t in, out;
  GemmEpilogue epilogue;
};

void gemm_row(Bench& bench, const Model& model, const std::string& name, const Tensor& a, const Tensor& b,
              const Tensor& c, const GemmArgs& args) {
  int64_t m = c.size(-2), n = c.size(-1), k = args.trans_a ? a.size(-2) : a.size(-1);
  std::printf("%-10s %-26s %6ld %6ld %6ld ", model.name, name.c_str(), static_cast<long>(m), static_cast<long>(n),
              static_cast<long>(k));
  double flops = 2.0 * double(m) * double(n) * double(k);
  try {
    // Ours is timed before and after cuBLASLt's candidates and keeps the better median, as
    // cuBLASLt's best keeps the best of its candidates' medians: clocks drift under load.
    auto ours = [&] { return bench.timer.median_ms([&] { bench.gpu.gemm(a, b, c, args); }); };
    double ms = ours();
    LtDirect::Best best = bench.lt.best(a, b, c, args, 8);
    ms = std::min(ms, ours());
    std::printf("%9.3f %8.1f %6.1f%% %9.1f (%d) %6.1f%%\n", ms, tflops(flops, ms),
                100.0 * tflops(flops, ms) / bench.gemm_ceiling, tflops(flops, best.ms), best.timed, 100.0 * best.ms / ms);
  } catch (const std::exception& e) {
    std::printf("n/a: %s\n", reason(e).c_str());
  }
  std::fflush(stdout);
}

void bench_gemms(Bench& bench, const Model& model) {
  const int64_t BT = model.B * model.T, C = model.C;
  std::vector<Linear> linears;
  if (model.gpt2) {
    linears = {{"qkv", C, 3 * C, GemmEpilogue::Bias},
               {"attn-out", C, C, GemmEpilogue::Bias},
               {"mlp-up+gelu", C, model.FFN, GemmEpilogue::BiasGelu},
               {"mlp-down", model.FFN, C, GemmEpilogue::Bias},
               {"lm-head", C, model.V, GemmEpilogue::None},
               // An odd vocabulary leaves rows 2-byte aligned; padded to a multiple of 128:
               {"lm-head V=50304", C, 50304, GemmEpilogue::None}};
  } else {
    linears = {{"qkv", C, (model.H + 2 * model.KV) * model.D, GemmEpilogue::None},
               {"attn-out", C, C, GemmEpilogue::None},
               {"mlp-gate-up", C, 2 * model.FFN, GemmEpilogue::None},
               {"mlp-down", model.FFN, C, GemmEpilogue::None},
               {"lm-head", C, model.V, GemmEpilogue::None}};
  }
  for (const Linear& l : linears) {
    try {
      Tensor x = bench.random.normal({1, BT, l.in}), w = bench.random.normal({1, l.out, l.in});
      Tensor dy = bench.random.normal({1, BT, l.out});
      GemmArgs fwd;
      fwd.trans_b = true;  // y = x W^T, W [out, in]
      fwd.epilogue = l.epilogue;
      if (l.epilogue != GemmEpilogue::None) fwd.bias = bench.random.normal({l.out});
      if (l.epilogue == GemmEpilogue::BiasGelu) fwd.pre_gelu = Tensor::empty({1, BT, l.out}, kAct, kGpu);
      Tensor y = Tensor::empty({1, BT, l.out}, kAct, kGpu);
      gemm_row(bench, model, std::string(l.name) + " fwd", x, w, y, fwd);
      y = fwd.pre_gelu = Tensor();
      Tensor dx = Tensor::empty({1, BT, l.in}, kAct, kGpu);
      gemm_row(bench, model, std::string(l.name) + " bwd dx", dy, w, dx, GemmArgs{});
      dx = Tensor();
      GemmArgs wgrad;
      wgrad.trans_a = true;  // dW = dy^T x
      Tensor dw = Tensor::empty({1, l.out, l.in}, kAct, kGpu);
      gemm_row(bench, model, std::string(l.name) + " bwd dW", dy, x, dw, wgrad);
    } catch (const std::exception& e) {
      std::printf("%-10s %-26s n/a: %s\n", model.name, l.name, reason(e).c_str());
    }
  }
  bench.gpu.caching_allocator().release_cached();
}

// ---- attention ----
void attention_rows(Bench& bench, const std::string& label, int64_t B, int64_t T, int64_t H, int64_t KV, int64_t D) {
  double flops_fwd = 4.0 * double(B) * double(H) * double(T) * double(T) * double(D) * 0.5;  // causal
  char shape[64];
  std::snprintf(shape, sizeof(shape), "B%ld H%ld/%ld T%ld D%ld", static_cast<long>(B), static_cast<long>(H),
                static_cast<long>(KV), static_cast<long>(T), static_cast<long>(D));
  Tensor q, k, v, out, lse, dout, dq, dk, dv;
  double scale = 1.0 / std::sqrt(double(D));
  for (bool backward : {false, true}) {
    std::printf("%-10s %-30s %-24s ", label.c_str(), backward ? "attention bwd (causal)" : "attention fwd (causal)",
                shape);
    try {
      if (!q.defined()) {
        q = bench.random.normal({B, T, H, D});
        k = bench.random.normal({B, T, KV, D});
        v = bench.random.normal({B, T, KV, D});
        out = Tensor::empty({B, T, H, D}, kAct, kGpu);
        lse = Tensor::empty({B, H, T}, DType::F32, kGpu);
      }
      double ms = 0.0, flops = flops_fwd;
      if (!backward) {
        ms = bench.timer.median_ms([&] { bench.gpu.attention(q, k, v, true, scale, out, lse); });
      } else {
        bench.gpu.attention(q, k, v, true, scale, out, lse);
        dout = bench.random.normal({B, T, H, D});
        dq = Tensor::empty({B, T, H, D}, kAct, kGpu);
        dk = Tensor::empty({B, T, KV, D}, kAct, kGpu);
        dv = Tensor::empty({B, T, KV, D}, kAct, kGpu);
        ms = bench.timer.median_ms(
            [&] { bench.gpu.attention_backward(q, k, v, out, lse, dout, true, scale, dq, dk, dv); });
        flops = 2.5 * flops_fwd;
      }
      std::printf("%9.3f %8.1f TFLOP/s %6.1f%% of GEMM ceiling\n", ms, tflops(flops, ms),
                  100.0 * tflops(flops, ms) / bench.gemm_ceiling);
    } catch (const std::exception& e) {
      std::printf("n/a: %s\n", reason(e).c_str());
    }
    std::fflush(stdout);
  }
}

// ---- memory-bound kernels ----
void bench_pointwise(Bench& bench, const Model& m) {
  Backend& gpu = bench.gpu;
  const int64_t BT = m.B * m.T, C = m.C, n = BT * C;
  const std::string rc = dims({BT, C});
  Tensor a, b, c, d, e, f, g, h, s1, s2;
  auto drop = [&] { a = b = c = d = e = f = g = h = s1 = s2 = Tensor(); };
  auto act = [&](const Shape& shape, DType dtype = kAct) { return bench.random.normal(shape, dtype); };
  auto out = [&](const Shape& shape, DType dtype = kAct) { return Tensor::empty(shape, dtype, kGpu); };

  bandwidth_row(bench, m, "residual add", rc, [&] { a = act({BT, C}), b = act({BT, C}), c = out({BT, C}); return 6.0 * n; },
                [&] { gpu.binary(BinaryOp::Add, a, b, c); });
  drop();
  if (m.gpt2) {
    const int64_t nf = BT * m.FFN;
    bandwidth_row(bench, m, "gelu fwd", dims({BT, m.FFN}), [&] { a = act({BT, m.FFN}), b = out({BT, m.FFN}); return 4.0 * nf; },
                  [&] { gpu.unary(UnaryOp::Gelu, a, b); });
    bandwidth_row(bench, m, "gelu bwd", dims({BT, m.FFN}), [&] { c = act({BT, m.FFN}); return 6.0 * nf; },
                  [&] { gpu.unary_backward(UnaryOp::Gelu, a, c, b); });
    drop();
    const double ln_bytes = 8.0 * n + 8.0 * BT + 4.0 * C;
    bandwidth_row(bench, m, "layer_norm+residual fwd", rc,
                  [&] {
                    a = act({BT, C}), b = act({BT, C}), c = act({C}), d = act({C}), e = out({BT, C}), f = out({BT, C});
                    s1 = out({BT}, DType::F32), s2 = out({BT}, DType::F32);
                    return ln_bytes;
                  },
                  [&] { gpu.layer_norm(a, b, c, d, 1e-5, e, f, s1, s2); });
    bandwidth_row(bench, m, "layer_norm+residual bwd", rc,
                  [&] { g = act({BT, C}), h = out({BT, C}), a = out({C}), b = out({C}); return ln_bytes; },
                  [&] { gpu.layer_norm_backward(f, c, s1, s2, e, g, h, a, b); });
  } else {
    const int64_t nf = BT * m.FFN;
    bandwidth_row(bench, m, "swiglu fwd", dims({BT, m.FFN}),
                  [&] { a = act({BT, m.FFN}), b = act({BT, m.FFN}), c = out({BT, m.FFN}); return 6.0 * nf; },
                  [&] { gpu.swiglu(a, b, c); });
    bandwidth_row(bench, m, "swiglu bwd", dims({BT, m.FFN}),
                  [&] { d = act({BT, m.FFN}), e = out({BT, m.FFN}), f = out({BT, m.FFN}); return 10.0 * nf; },
                  [&] { gpu.swiglu_backward(a, b, d, e, f); });
    drop();
    const double rms_bytes = 8.0 * n + 4.0 * BT + 2.0 * C;
    bandwidth_row(bench, m, "rms_norm+residual fwd", rc,
                  [&] {
                    a = act({BT, C}), b = act({BT, C}), c = act({C}), e = out({BT, C}), f = out({BT, C});
                    s1 = out({BT}, DType::F32);
                    return rms_bytes;
                  },
                  [&] { gpu.rms_norm(a, b, c, 1e-5, e, f, s1); });
    bandwidth_row(bench, m, "rms_norm+residual bwd", rc,
                  [&] { g = act({BT, C}), h = out({BT, C}), d = out({C}); return rms_bytes; },
                  [&] { gpu.rms_norm_backward(f, c, s1, e, g, h, d); });
    drop();
    const int64_t nq = BT * m.H * m.D;
    bandwidth_row(bench, m, "rope (q)", dims({m.B, m.T, m.H, m.D}),
                  [&] {
                    a = act({m.B, m.T, m.H, m.D}), b = out({m.B, m.T, m.H, m.D});
                    c = act({m.T, m.D / 2}, DType::F32), d = act({m.T, m.D / 2}, DType::F32);
                    return 4.0 * nq + 4.0 * m.T * m.D;
                  },
                  [&] { gpu.rope(a, c, d, false, b); });
  }
  drop();
  bandwidth_row(bench, m, "dropout p=0.1", rc, [&] { a = act({BT, C}), b = out({BT, C}); return 4.0 * n; },
                [&] { gpu.dropout(a, 0.1, PhiloxState{42, 0}, b); });
  drop();
  // Attention-score shaped softmax (what an unfused attention would run).
  const int64_t R = m.B * m.H * m.T, ns = R * m.T;
  bandwidth_row(bench, m, "softmax fwd", dims({R, m.T}), [&] { a = act({R, m.T}), b = out({R, m.T}); return 4.0 * ns; },
                [&] { gpu.softmax(a, b); });
  bandwidth_row(bench, m, "softmax bwd", dims({R, m.T}), [&] { c = act({R, m.T}); return 6.0 * ns; },
                [&] { gpu.softmax_backward(b, c, a); });
  drop();
  const int64_t nv = BT * m.V;
  bandwidth_row(bench, m, "cross_entropy_fused (in place)", dims({BT, m.V}),
                [&] {
                  a = act({BT, m.V}), b = bench.random.ids(BT, m.V);
                  c = Tensor::full({BT}, 1.0 / double(BT), DType::F32, kGpu), d = out({BT}, DType::F32);
                  return 4.0 * nv + 16.0 * BT;
                },
                [&] { gpu.cross_entropy_fused(a, b, -100, c, d, a); });
  drop();
  bandwidth_row(bench, m, "embedding fwd", rc,
                [&] { a = act({m.V, C}), b = bench.random.ids(BT, m.V), c = out({BT, C}); return 4.0 * n + 8.0 * BT; },
                [&] { gpu.embedding(a, b, c); });
  for (bool deterministic : {true, false}) {
    bandwidth_row(bench, m, deterministic ? "embedding bwd (deterministic)" : "embedding bwd (atomic)", rc,
                  [&] { d = act({BT, C}), e = Tensor::zeros({m.V, C}, kAct, kGpu); return 6.0 * n + 8.0 * BT; },
                  [&] { gpu.embedding_backward_accumulate(b, d, e, deterministic); });
  }
  drop();
  bench.gpu.caching_allocator().release_cached();
}

// GPT-2 124M's parameter tensors (tied embedding), for the optimizer rows.
std::vector<Shape> gpt2_parameter_shapes(const Model& m) {
  std::vector<Shape> shapes = {{m.V, m.C}, {m.T, m.C}};
  for (int layer = 0; layer < 12; ++layer) {
    for (const Shape& s : std::vector<Shape>{{m.C}, {m.C}, {3 * m.C, m.C}, {3 * m.C}, {m.C, m.C}, {m.C}, {m.C}, {m.C},
                                             {m.FFN, m.C}, {m.FFN}, {m.C, m.FFN}, {m.C}})
      shapes.push_back(s);
  }
  shapes.push_back({m.C});
  shapes.push_back({m.C});
  return shapes;
}

void bench_optimizer(Bench& bench, const Model& m) {
  std::vector<Shape> shapes = gpt2_parameter_shapes(m);
  double count = 0.0;
  for (const Shape& shape : shapes) count += double(shape_numel(shape));
  char label[32];
  std::snprintf(label, sizeof(label), "%.1fM params", count / 1e6);
  std::vector<AdamWParam> params;
  std::vector<Tensor> grads;
  Tensor norm;
  // Reads master, exp_avg, exp_avg_sq (f32) and the bf16 grad; writes the three f32 tensors
  // and the bf16 model copy: 28 bytes a parameter.
  bandwidth_row(bench, m, "adamw (bf16 grads + copy)", label,
                [&] {
                  for (const Shape& shape : shapes) {
                    AdamWParam p{bench.random.normal(shape, DType::F32), bench.random.normal(shape, kAct),
                                 bench.random.normal(shape, DType::F32), Tensor::full(shape, 1e-4, DType::F32, kGpu),
                                 Tensor::empty(shape, kAct, kGpu)};
                    grads.push_back(p.grad);
                    params.push_back(std::move(p));
                  }
                  return 28.0 * count;
                },
                [&] {
                  AdamWHyper hyper;
                  hyper.weight_decay = 0.1;
                  bench.gpu.adamw(params, hyper);
                });
  bandwidth_row(bench, m, "sum_squares (grad norm)", label,
                [&] {
                  norm = Tensor::empty({1}, DType::F32, kGpu);
                  return 2.0 * count;
                },
                [&] { bench.gpu.sum_squares(grads, norm); });
  params.clear();
  grads.clear();
  bench.gpu.caching_allocator().release_cached();
}

}  // namespace
}  // namespace tessera::bench

int main() {
  using namespace tessera;
  using namespace tessera::bench;
  if (cuda_device_count() == 0) {
    std::printf("bench/kernels: no GPU visible, nothing to measure\n");
    return 0;
  }
  try {
    Bench bench(cuda_backend(0));
    std::printf("bench/kernels on %s\n\n", cuda_device_description(0).c_str());
    measure_ceilings(bench);
    const Model gpt2{"gpt2-124m", 16, 1024, 768, 12, 12, 64, 3072, 50257, true};
    const Model llama{"llama-1b", 4, 2048, 2048, 32, 8, 64, 8192, 128256, false};

    std::printf("== GEMMs (bf16, f32 accumulation; c = a op b as Backend::gemm) ==\n");
    std::printf("%-10s %-26s %6s %6s %6s %9s %8s %7s %13s %7s\n", "model", "gemm", "M", "N", "K", "ms", "TFLOP/s",
                "%ceil", "cuBLASLt(n)", "ours");
    for (const Model& model : {gpt2, llama}) bench_gemms(bench, model);

    std::printf("\n== attention (bf16, causal; TFLOP/s of the unmasked half) ==\n");
    attention_rows(bench, gpt2.name, gpt2.B, gpt2.T, gpt2.H, gpt2.KV, gpt2.D);
    attention_rows(bench, llama.name, llama.B, llama.T, llama.H, llama.KV, llama.D);
    // The shapes of bench/attention_torch.py (PyTorch SDPA), (B, H, T, D).
    for (auto [B, H, T, D] : {std::array<int64_t, 4>{8, 16, 2048, 128}, std::array<int64_t, 4>{16, 12, 1024, 64},
                              std::array<int64_t, 4>{4, 16, 4096, 128}})
      attention_rows(bench, "sdpa", B, T, H, H, D);
    bench.gpu.caching_allocator().release_cached();

    std::printf("\n== memory-bound kernels (bf16 activations, f32 statistics) ==\n");
    std::printf("%-10s %-30s %-24s %9s %9s %8s\n", "model", "kernel", "shape", "ms", "GB/s", "%copy");
    for (const Model& model : {gpt2, llama}) bench_pointwise(bench, model);
    bench_optimizer(bench, gpt2);
  } catch (const std::exception& e) {
    std::printf("bench/kernels failed: %s\n", e.what());
    return 1;
  }
  return 0;
}
