// CUDA layer/RMS norm (with and without the fused residual and bias, forward and backward),
// softmax, cross-entropy (unfused and fused, ignore_index rows, GPT-2 and Llama 3 vocabularies),
// rotary embedding, multi-tensor AdamW, sum of squares and unscale-and-check against the CPU
// backend, on fresh random inputs with every output poisoned (NaN) first; bad inputs throw.
// f32 cases are checked against the CPU kernel run in f64 on the same values, so the CPU's own
// f32 rounding (sequential sums over rows of 128k logits) does not eat into the 1e-5 budget;
// bf16/f16 cases against the CPU kernel in the same dtype (same rounding of h = x + residual),
// except cross-entropy losses (f32 statistics), always checked against the CPU in f64.
// Each comparison prints its normwise relative error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/check.h"
#include "core/ops/elementwise.h"
#include "core/ops/nn.h"
#include "core/ops/random_ops.h"
#include "support/gpu.h"

namespace tessera {
namespace {

using testing::poisoned;
using testing::relative_error;
using testing::tolerance_for;

const Device kGpu = Device::cuda(0);
const Device kCpu = Device::cpu();

Backend& cpu() { return backend_for(kCpu); }
Backend& gpu() { return backend_for(kGpu); }

DType stats_of(DType dtype) { return dtype == DType::F64 ? DType::F64 : DType::F32; }

// x * factor + shift with x ~ N(0, 1), drawn on the host, rounded to dtype, placed on device.
Tensor random(const Shape& shape, Generator& g, DType dtype, Device device = kGpu, double factor = 1.0,
              double shift = 0.0) {
  return affine(randn(shape, g), factor, shift).to(dtype).to(device);
}

// The CPU reference's copy of a tensor: on the host, in f64 when the case runs in f32.
Tensor ref(const Tensor& t, DType case_dtype) {
  if (!t.defined()) return Tensor();
  Tensor host = t.to(kCpu);
  return case_dtype == DType::F32 && host.dtype() == DType::F32 ? host.to(DType::F64) : host;
}

// Poisoned outputs like `like`, on the GPU and for the reference.
Tensor gpu_out(const Shape& shape, DType dtype) { return poisoned(shape, dtype, kGpu); }
Tensor ref_out(const Shape& shape, DType dtype, DType case_dtype) {
  return poisoned(shape, case_dtype == DType::F32 && dtype == DType::F32 ? DType::F64 : dtype, kCpu);
}

void expect_close(const std::string& what, const Tensor& got, const Tensor& want, double tolerance) {
  const double err = relative_error(got, want);
  std::printf("[ gpu err  ] %-58s %.2e (tolerance %.0e)\n", what.c_str(), err, tolerance);
  EXPECT_LE(err, tolerance) << what;
}

std::string shape_name(DType dtype, const Shape& shape) {
  return std::string(dtype_name(dtype)) + " " + shape_str(shape);
}

// ---------------------------------------------------------------- layer norm, RMS norm

struct NormCase {
  int64_t R, C;
  DType dtype;
  bool residual;
  bool bias;  // layer norm only
};

class GpuNorm : public ::testing::TestWithParam<NormCase> {};

TEST_P(GpuNorm, LayerNormMatchesTheCpu) {
  TS_REQUIRE_GPU();
  const NormCase c = GetParam();
  const DType dt = c.dtype, st = stats_of(dt);
  const double tol = tolerance_for(dt), stat_tol = tolerance_for(st);
  const std::string name = "layer_norm " + shape_name(dt, {c.R, c.C}) + (c.residual ? " +res" : "") +
                           (c.bias ? " +bias" : "");
  Generator g(100 + c.C);
  const Tensor x = random({c.R, c.C}, g, dt, kGpu, 2.0, 0.5);
  const Tensor res = c.residual ? random({c.R, c.C}, g, dt) : Tensor();
  const Tensor w = random({c.C}, g, dt, kGpu, 0.5, 1.0);
  const Tensor b = c.bias ? random({c.C}, g, dt, kGpu, 0.2) : Tensor();
  const double eps = 1e-5;

  Tensor y = gpu_out({c.R, c.C}, dt), res_out = c.residual ? gpu_out({c.R, c.C}, dt) : Tensor();
  Tensor mean = gpu_out({c.R}, st), rstd = gpu_out({c.R}, st);
  gpu().layer_norm(x, res, w, b, eps, y, res_out, mean, rstd);
  Tensor y_ref = ref_out({c.R, c.C}, dt, dt), res_out_ref = c.residual ? ref_out({c.R, c.C}, dt, dt) : Tensor();
  Tensor mean_ref = ref_out({c.R}, st, dt), rstd_ref = ref_out({c.R}, st, dt);
  cpu().layer_norm(ref(x, dt), ref(res, dt), ref(w, dt), ref(b, dt), eps, y_ref, res_out_ref, mean_ref, rstd_ref);
  expect_close(name + " y", y, y_ref, tol);
  if (c.residual) expect_close(name + " residual_out", res_out, res_out_ref, tol);
  expect_close(name + " mean", mean, mean_ref, stat_tol);
  expect_close(name + " rstd", rstd, rstd_ref, stat_tol);

  // Backward from the same h and statistics on both sides (the reference's forward).
  const Tensor h = c.residual ? res_out : x;
  const Tensor dy = random({c.R, c.C}, g, dt), dres = c.residual ? random({c.R, c.C}, g, dt) : Tensor();
  const Tensor mean_in = mean_ref.to(st).to(kGpu), rstd_in = rstd_ref.to(st).to(kGpu);
  Tensor dh = gpu_out({c.R, c.C}, dt), dw = gpu_out({c.C}, dt), db = c.bias ? gpu_out({c.C}, dt) : Tensor();
  gpu().layer_norm_backward(h, w, mean_in, rstd_in, dy, dres, dh, dw, db);
  Tensor dh_ref = ref_out({c.R, c.C}, dt, dt), dw_ref = ref_out({c.C}, dt, dt);
  Tensor db_ref = c.bias ? ref_out({c.C}, dt, dt) : Tensor();
  cpu().layer_norm_backward(ref(h, dt), ref(w, dt), ref(mean_in, dt), ref(rstd_in, dt), ref(dy, dt), ref(dres, dt),
                            dh_ref, dw_ref, db_ref);
  expect_close(name + " dL_dh", dh, dh_ref, tol);
  expect_close(name + " dL_dweight", dw, dw_ref, tol);
  if (c.bias) expect_close(name + " dL_dbias", db, db_ref, tol);

  // Deterministic: the same bits again.
  Tensor dw2 = gpu_out({c.C}, dt), db2 = c.bias ? gpu_out({c.C}, dt) : Tensor();
  gpu().layer_norm_backward(h, w, mean_in, rstd_in, dy, dres, gpu_out({c.R, c.C}, dt), dw2, db2);
  EXPECT_EQ(dw2.to_vector<double>(), dw.to_vector<double>()) << name;
  if (c.bias) {
    EXPECT_EQ(db2.to_vector<double>(), db.to_vector<double>()) << name;
  }
}

TEST_P(GpuNorm, RmsNormMatchesTheCpu) {
  TS_REQUIRE_GPU();
  const NormCase c = GetParam();
  const DType dt = c.dtype, st = stats_of(dt);
  const double tol = tolerance_for(dt);
  const std::string name = "rms_norm " + shape_name(dt, {c.R, c.C}) + (c.residual ? " +res" : "");
  Generator g(200 + c.C);
  const Tensor x = random({c.R, c.C}, g, dt, kGpu, 2.0, 0.5);
  const Tensor res = c.residual ? random({c.R, c.C}, g, dt) : Tensor();
  const Tensor w = random({c.C}, g, dt, kGpu, 0.5, 1.0);
  const double eps = 1e-6;

  Tensor y = gpu_out({c.R, c.C}, dt), res_out = c.residual ? gpu_out({c.R, c.C}, dt) : Tensor();
  Tensor rstd = gpu_out({c.R}, st);
  gpu().rms_norm(x, res, w, eps, y, res_out, rstd);
  Tensor y_ref = ref_out({c.R, c.C}, dt, dt), res_out_ref = c.residual ? ref_out({c.R, c.C}, dt, dt) : Tensor();
  Tensor rstd_ref = ref_out({c.R}, st, dt);
  cpu().rms_norm(ref(x, dt), ref(res, dt), ref(w, dt), eps, y_ref, res_out_ref, rstd_ref);
  expect_close(name + " y", y, y_ref, tol);
  if (c.residual) expect_close(name + " residual_out", res_out, res_out_ref, tol);
  expect_close(name + " rstd", rstd, rstd_ref, tolerance_for(st));

  const Tensor h = c.residual ? res_out : x;
  const Tensor dy = random({c.R, c.C}, g, dt), dres = c.residual ? random({c.R, c.C}, g, dt) : Tensor();
  const Tensor rstd_in = rstd_ref.to(st).to(kGpu);
  Tensor dh = gpu_out({c.R, c.C}, dt), dw = gpu_out({c.C}, dt);
  gpu().rms_norm_backward(h, w, rstd_in, dy, dres, dh, dw);
  Tensor dh_ref = ref_out({c.R, c.C}, dt, dt), dw_ref = ref_out({c.C}, dt, dt);
  cpu().rms_norm_backward(ref(h, dt), ref(w, dt), ref(rstd_in, dt), ref(dy, dt), ref(dres, dt), dh_ref, dw_ref);
  expect_close(name + " dL_dh", dh, dh_ref, tol);
  expect_close(name + " dL_dweight", dw, dw_ref, tol);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GpuNorm,
    ::testing::Values(NormCase{8 * 1024, 768, DType::F32, true, true}, NormCase{8 * 1024, 768, DType::BF16, true, true},
                      NormCase{8 * 1024, 768, DType::BF16, false, false}, NormCase{1000, 2048, DType::BF16, true, false},
                      NormCase{64, 97, DType::F32, false, true}, NormCase{64, 97, DType::BF16, true, true},
                      NormCase{5, 4100, DType::BF16, true, true},  // C % 8 == 4: the scalar path, rows > 1024 threads
                      NormCase{3, 16384, DType::F32, true, true},  // > 48 KiB of shared memory
                      NormCase{33, 40, DType::F64, true, true}, NormCase{17, 96, DType::F16, true, true}));

TEST(GpuNormErrors, BadArgumentsThrow) {
  TS_REQUIRE_GPU();
  Tensor x = Tensor::zeros({4, 8}, DType::F32, kGpu), w = Tensor::ones({8}, DType::F32, kGpu);
  Tensor y = gpu_out({4, 8}, DType::F32), mean = gpu_out({4}, DType::F32), rstd = gpu_out({4}, DType::F32);
  EXPECT_THROW(gpu().layer_norm(x, Tensor(), Tensor::ones({7}, DType::F32, kGpu), Tensor(), 1e-5, y, Tensor(), mean, rstd),
               Error);
  EXPECT_THROW(gpu().layer_norm(x, Tensor(), w.to(kCpu), Tensor(), 1e-5, y, Tensor(), mean, rstd), Error);
  EXPECT_THROW(gpu().layer_norm(x, Tensor(), w, Tensor(), 1e-5, y, Tensor(), mean.to(DType::BF16), rstd), Error);
  EXPECT_THROW(gpu().rms_norm(x, x, w, 1e-5, y, Tensor(), rstd), Error);  // residual without residual_out
  EXPECT_THROW(gpu().rms_norm(x.transpose(0, 1).contiguous().transpose(0, 1), Tensor(), w, 1e-5, y, Tensor(), rstd),
               Error);  // strided x
  EXPECT_THROW(gpu().rms_norm_backward(x, w, rstd, x, Tensor(), y, Tensor::ones({8}, DType::BF16, kGpu)), Error);
}

// ---------------------------------------------------------------- softmax

TEST(GpuSoftmax, ForwardAndBackwardMatchTheCpu) {
  TS_REQUIRE_GPU();
  struct Case {
    int64_t R, C;
    DType dtype;
    int64_t offset;  // elements of x, y, dL_dy and dL_dx placed after a 16-byte boundary
    bool masked = false;  // the first 600 entries of each row are -inf (as under a causal mask)
  };
  for (const Case& c : {Case{64, 97, DType::F32, 0}, Case{64, 97, DType::BF16, 0}, Case{32, 1024, DType::F32, 0},
                        Case{32, 1024, DType::BF16, 0}, Case{8, 50257, DType::BF16, 0}, Case{16, 1000, DType::BF16, 3},
                        Case{7, 33, DType::F64, 1}, Case{16, 1000, DType::F32, 0, true}}) {
    const DType dt = c.dtype;
    const std::string name = "softmax " + shape_name(dt, {c.R, c.C}) + " offset " + std::to_string(c.offset) +
                             (c.masked ? " masked" : "");
    Generator g(300 + c.C);
    auto shifted = [&](Tensor t) {  // the same values at an offset inside a larger buffer
      Tensor buffer = poisoned({c.R * c.C + c.offset}, dt, kGpu);
      Tensor view = buffer.narrow(0, c.offset, c.R * c.C).view({c.R, c.C});
      view.copy_(t);
      return view;
    };
    const Tensor x = shifted(random({c.R, c.C}, g, dt, kGpu, 3.0));
    if (c.masked) x.narrow(1, 0, 600).fill_(-std::numeric_limits<double>::infinity());
    Tensor y = shifted(gpu_out({c.R, c.C}, dt));
    gpu().softmax(x, y);
    Tensor y_ref = ref_out({c.R, c.C}, dt, dt);
    cpu().softmax(ref(x, dt), y_ref);
    expect_close(name + " y", y, y_ref, tolerance_for(dt));

    const Tensor dy = shifted(random({c.R, c.C}, g, dt));
    const Tensor y_in = shifted(y_ref.to(dt).to(kGpu));
    Tensor dx = shifted(gpu_out({c.R, c.C}, dt));
    gpu().softmax_backward(y_in, dy, dx);
    Tensor dx_ref = ref_out({c.R, c.C}, dt, dt);
    cpu().softmax_backward(ref(y_in, dt), ref(dy, dt), dx_ref);
    expect_close(name + " dL_dx", dx, dx_ref, tolerance_for(dt));
  }
}

// ---------------------------------------------------------------- cross-entropy

constexpr int64_t kIgnore = -100;

// Targets in [0, V), every fifth row ignored.
Tensor random_targets(int64_t N, int64_t V, Generator& g, DType index) {
  std::vector<int64_t> t(static_cast<size_t>(N));
  const std::vector<float> u = rand({N}, g).to_vector<float>();
  for (size_t i = 0; i < t.size(); ++i) t[i] = i % 5 == 2 ? kIgnore : std::min<int64_t>(V - 1, int64_t(u[i] * V));
  return Tensor::from_vector(t, {N}).to(index).to(kGpu);
}

struct CrossEntropyCase {
  int64_t N, V;
  DType dtype, index;
};

class GpuCrossEntropy : public ::testing::TestWithParam<CrossEntropyCase> {};

TEST_P(GpuCrossEntropy, UnfusedAndFusedMatchTheCpu) {
  TS_REQUIRE_GPU();
  const auto [N, V, dt, index] = GetParam();
  const DType st = stats_of(dt);
  const std::string name = "cross_entropy " + shape_name(dt, {N, V}) + " " + std::string(dtype_name(index));
  Generator g(400 + V);
  const Tensor logits = random({N, V}, g, dt, kGpu, 3.0);
  const Tensor targets = random_targets(N, V, g, index);
  const Tensor dlosses = random({N}, g, st, kGpu, 0.5, 1.0);
  const Tensor targets_cpu = targets.to(kCpu);

  // Losses against the CPU in f64 whatever the logits' dtype: a row's logsumexp sums up to 128k
  // terms, which the CPU's sequential f32 loop rounds by ~1e-5 itself.
  Tensor losses = gpu_out({N}, st), losses_ref = poisoned({N}, DType::F64, kCpu);
  gpu().cross_entropy(logits, targets, kIgnore, losses);
  cpu().cross_entropy(logits.to(kCpu).to(DType::F64), targets_cpu, kIgnore, losses_ref);
  expect_close(name + " losses", losses, losses_ref, tolerance_for(st));

  Tensor grad = gpu_out({N, V}, dt), grad_ref = ref_out({N, V}, dt, dt);
  gpu().cross_entropy_backward(logits, targets, kIgnore, dlosses, grad);
  cpu().cross_entropy_backward(ref(logits, dt), targets_cpu, kIgnore, ref(dlosses, dt), grad_ref);
  expect_close(name + " dL_dlogits", grad, grad_ref, tolerance_for(dt));

  // Fused, in place over a copy of the logits, against the CPU's fused kernel.
  Tensor in_place = logits.clone(), fused_losses = gpu_out({N}, st);
  gpu().cross_entropy_fused(in_place, targets, kIgnore, dlosses, fused_losses, in_place);
  Tensor fused_losses_ref = ref_out({N}, st, dt), fused_grad_ref = ref_out({N, V}, dt, dt);
  cpu().cross_entropy_fused(ref(logits, dt), targets_cpu, kIgnore, ref(dlosses, dt), fused_losses_ref, fused_grad_ref);
  expect_close(name + " fused losses", fused_losses, losses_ref, tolerance_for(st));
  expect_close(name + " fused dL_dlogits (in place)", in_place, fused_grad_ref, tolerance_for(dt));
}

INSTANTIATE_TEST_SUITE_P(Vocabularies, GpuCrossEntropy,
                         ::testing::Values(CrossEntropyCase{64, 50257, DType::BF16, DType::I64},  // GPT-2
                                           CrossEntropyCase{16, 50257, DType::F32, DType::I32},
                                           CrossEntropyCase{16, 128256, DType::BF16, DType::I32},  // Llama 3
                                           CrossEntropyCase{8, 128256, DType::F32, DType::I64},
                                           CrossEntropyCase{37, 97, DType::F32, DType::I64},
                                           CrossEntropyCase{9, 33, DType::F64, DType::I32}));

TEST(GpuCrossEntropyErrors, OutOfRangeTargetsGiveNaNRowsAndBadArgumentsThrow) {
  TS_REQUIRE_GPU();
  constexpr int64_t N = 4, V = 1000;
  Generator g(7);
  const Tensor logits = random({N, V}, g, DType::BF16);
  const Tensor targets = Tensor::from_vector<int64_t>({5, V, -1, kIgnore}, {N}).to(kGpu);
  const Tensor dlosses = Tensor::ones({N}, DType::F32, kGpu);
  Tensor losses = gpu_out({N}, DType::F32), grad = gpu_out({N, V}, DType::BF16);
  gpu().cross_entropy_fused(logits, targets, kIgnore, dlosses, losses, grad);
  const std::vector<float> l = losses.to_vector<float>();
  EXPECT_TRUE(std::isfinite(l[0]) && l[0] > 0);
  EXPECT_TRUE(std::isnan(l[1]) && std::isnan(l[2])) << "out-of-range targets give NaN losses";
  EXPECT_EQ(l[3], 0.0f);
  const std::vector<float> gr = grad.to_vector<float>();
  EXPECT_TRUE(std::isnan(gr[V + 17]) && std::isnan(gr[2 * V + 999]));
  EXPECT_EQ(gr[3 * V + 5], 0.0f);

  EXPECT_THROW(gpu().cross_entropy(logits, targets.to(DType::F32), kIgnore, losses), Error);
  EXPECT_THROW(gpu().cross_entropy(logits, targets.to(kCpu), kIgnore, losses), Error);
  EXPECT_THROW(gpu().cross_entropy(logits, targets, kIgnore, gpu_out({N}, DType::BF16)), Error);
  EXPECT_THROW(gpu().cross_entropy_backward(logits, targets, kIgnore, dlosses, gpu_out({N, V + 1}, DType::BF16)), Error);
  EXPECT_THROW(gpu().softmax(logits, gpu_out({N, V}, DType::F32)), Error);
}

// ---------------------------------------------------------------- rotary embedding

TEST(GpuRope, ForwardAndInverseMatchTheCpuAlsoInPlace) {
  TS_REQUIRE_GPU();
  struct Case {
    int64_t B, T, H, D;
    DType dtype;
  };
  for (const Case& c : {Case{2, 64, 12, 64, DType::BF16}, Case{2, 64, 12, 64, DType::F32},
                        Case{1, 17, 4, 128, DType::F32}, Case{3, 5, 2, 6, DType::BF16}, Case{2, 9, 3, 8, DType::F64}}) {
    const DType dt = c.dtype;
    const Shape shape{c.B, c.T, c.H, c.D};
    Generator g(500 + c.D);
    const Tensor x = random(shape, g, dt);
    auto [cos, sin] = rope_tables(c.T, c.D, 10000.0, {}, stats_of(dt), kGpu);
    for (bool inverse : {false, true}) {
      const std::string name = "rope " + shape_name(dt, shape) + (inverse ? " inverse" : "");
      Tensor out = gpu_out(shape, dt), out_ref = ref_out(shape, dt, dt);
      gpu().rope(x, cos, sin, inverse, out);
      cpu().rope(ref(x, dt), ref(cos, dt), ref(sin, dt), inverse, out_ref);
      expect_close(name, out, out_ref, tolerance_for(dt));
      Tensor in_place = x.clone();
      gpu().rope(in_place, cos, sin, inverse, in_place);
      EXPECT_EQ(in_place.to_vector<double>(), out.to_vector<double>()) << name << " in place";
    }
  }
  const Tensor x = Tensor::zeros({1, 4, 2, 8}, DType::F32, kGpu);
  auto [cos, sin] = rope_tables(4, 8, 10000.0, {}, DType::F64, kGpu);
  EXPECT_THROW(gpu().rope(x, cos, sin, false, gpu_out({1, 4, 2, 8}, DType::F32)), Error);  // f64 tables for f32 x
  EXPECT_THROW(gpu().rope(Tensor::zeros({1, 4, 2, 7}, DType::F32, kGpu), cos.to(DType::F32), sin.to(DType::F32), false,
                          gpu_out({1, 4, 2, 7}, DType::F32)),
               Error);  // odd D
}

// ---------------------------------------------------------------- AdamW, sum of squares, unscale

// A tensor of n elements, contiguous but (offset > 0) not 16-byte aligned: a view into a
// larger buffer, as ZeRO's flat shards are.
Tensor at_offset(const Tensor& values, int64_t offset) {
  Tensor buffer = Tensor::zeros({values.numel() + offset}, values.dtype(), values.device());
  Tensor view = buffer.narrow(0, offset, values.numel()).view(values.shape());
  view.copy_(values);
  return view;
}

TEST(GpuOptimizer, AdamWOverManyTensorsMatchesTheCpuForThreeSteps) {
  TS_REQUIRE_GPU();
  struct Param {
    Shape shape;
    DType grad;
    DType copy;  // F32 = no model copy
    int64_t offset;
  };
  const std::vector<Param> layout = {
      {{1}, DType::F32, DType::BF16, 0},          {{3}, DType::BF16, DType::BF16, 0},
      {{4}, DType::F32, DType::F32, 0},           {{1000}, DType::BF16, DType::BF16, 0},
      {{4097}, DType::F32, DType::BF16, 0},       {{257, 255}, DType::BF16, DType::F32, 0},
      {{768, 3072}, DType::BF16, DType::BF16, 0}, {{1 << 20, 1}, DType::F32, DType::BF16, 0},
      {{5000}, DType::BF16, DType::BF16, 1},      {{333}, DType::F32, DType::F16, 3},
      {{2, 2049}, DType::F16, DType::F16, 0}};
  AdamWHyper hyper;
  hyper.lr = 1e-3;
  hyper.beta1 = 0.9;
  hyper.beta2 = 0.95;
  hyper.eps = 1e-8;
  hyper.weight_decay = 0.1;
  hyper.grad_scale = 2.0;
  Generator g(600);
  std::vector<AdamWParam> on_gpu, on_cpu;
  for (const Param& p : layout) {
    const Tensor master = random(p.shape, g, DType::F32, kCpu);
    AdamWParam a{at_offset(master.to(kGpu), p.offset), Tensor(), at_offset(Tensor::zeros(p.shape, DType::F32, kGpu), p.offset),
                 at_offset(Tensor::zeros(p.shape, DType::F32, kGpu), p.offset),
                 p.copy == DType::F32 ? Tensor() : at_offset(gpu_out(p.shape, p.copy), p.offset)};
    on_gpu.push_back(a);
    on_cpu.push_back({master.clone(), Tensor(), Tensor::zeros(p.shape), Tensor::zeros(p.shape),
                      p.copy == DType::F32 ? Tensor() : poisoned(p.shape, p.copy, kCpu)});
  }
  for (int64_t step = 1; step <= 3; ++step) {
    hyper.step = step;
    for (size_t i = 0; i < layout.size(); ++i) {
      const Tensor grad = random(layout[i].shape, g, layout[i].grad, kCpu, 0.1);
      on_gpu[i].grad = at_offset(grad.to(kGpu), layout[i].offset);
      on_cpu[i].grad = grad;
    }
    gpu().adamw(on_gpu, hyper);
    cpu().adamw(on_cpu, hyper);
    for (size_t i = 0; i < layout.size(); ++i) {
      const std::string name = "adamw step " + std::to_string(step) + " " + shape_name(layout[i].grad, layout[i].shape) +
                               " grad, offset " + std::to_string(layout[i].offset);
      expect_close(name + " master", on_gpu[i].master, on_cpu[i].master, tolerance_for(DType::F32));
      expect_close(name + " exp_avg", on_gpu[i].exp_avg, on_cpu[i].exp_avg, tolerance_for(DType::F32));
      expect_close(name + " exp_avg_sq", on_gpu[i].exp_avg_sq, on_cpu[i].exp_avg_sq, tolerance_for(DType::F32));
      if (on_gpu[i].model_copy.defined()) {
        const DType copy = on_gpu[i].model_copy.dtype();
        expect_close(name + " model copy", on_gpu[i].model_copy, on_cpu[i].model_copy, tolerance_for(copy));
        EXPECT_EQ(on_gpu[i].model_copy.to_vector<double>(), on_gpu[i].master.to(copy).to_vector<double>())
            << name << ": the model copy is the new master rounded";
      }
    }
  }
  AdamWParam bad = on_gpu[0];
  bad.master = bad.master.to(DType::BF16);
  EXPECT_THROW(gpu().adamw({bad}, hyper), Error);
  bad = on_gpu[0];
  bad.grad = on_cpu[0].grad;
  EXPECT_THROW(gpu().adamw({bad}, hyper), Error);  // grad on the host
  hyper.step = 0;
  EXPECT_THROW(gpu().adamw(on_gpu, hyper), Error);
}

TEST(GpuOptimizer, SumSquaresMatchesTheCpuAndIsDeterministic) {
  TS_REQUIRE_GPU();
  Generator g(700);
  std::vector<Tensor> tensors = {random({1000}, g, DType::F32),        random({4097}, g, DType::F32),
                                 random({1 << 20}, g, DType::F32),     random({65539}, g, DType::BF16),
                                 random({3}, g, DType::BF16),          at_offset(random({5001}, g, DType::F32), 1),
                                 random({768, 3072}, g, DType::BF16), random({77}, g, DType::F16)};
  std::vector<Tensor> on_cpu;
  for (const Tensor& t : tensors) on_cpu.push_back(t.to(kCpu));
  Tensor out = gpu_out({1}, DType::F32), out_ref = poisoned({1}, DType::F32, kCpu);
  gpu().sum_squares(tensors, out);
  cpu().sum_squares(on_cpu, out_ref);
  expect_close("sum_squares of 8 tensors (f32, bf16, f16)", out, out_ref, tolerance_for(DType::F32));
  Tensor again = gpu_out({1}, DType::F32);
  gpu().sum_squares(tensors, again);
  EXPECT_EQ(again.item(), out.item());
  gpu().sum_squares({}, again);
  EXPECT_EQ(again.item(), 0.0);
  EXPECT_THROW(gpu().sum_squares(tensors, Tensor::zeros({1}, DType::F64, kGpu)), Error);
  EXPECT_THROW(gpu().sum_squares({on_cpu[0]}, out), Error);
}

TEST(GpuOptimizer, UnscaleMultipliesLikeTheCpuAndFlagsInfAndNaN) {
  TS_REQUIRE_GPU();
  Generator g(800);
  const double inv_scale = 1.0 / 1024.0;
  for (double bad : {0.0, std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()}) {
    std::vector<Tensor> tensors = {random({4097}, g, DType::F16, kGpu, 1000.0), random({1 << 16}, g, DType::F32, kGpu, 100.0),
                                   at_offset(random({333}, g, DType::BF16, kGpu, 100.0), 1)};
    if (bad != 0.0) tensors[1].narrow(0, 40000, 1).fill_(bad);
    std::vector<Tensor> on_cpu;
    for (const Tensor& t : tensors) on_cpu.push_back(t.to(kCpu));
    Tensor found = Tensor::zeros({1}, DType::F32, kGpu), found_ref = Tensor::zeros({1});
    gpu().unscale_and_check_finite(tensors, inv_scale, found);
    cpu().unscale_and_check_finite(on_cpu, inv_scale, found_ref);
    const std::string name = "unscale with " + std::to_string(bad);
    EXPECT_EQ(found.item(), found_ref.item()) << name;
    EXPECT_EQ(found.item(), bad == 0.0 ? 0.0 : 1.0) << name;
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (i == 1 && bad != 0.0) continue;  // holds the inf/NaN
      expect_close(name + " " + shape_name(tensors[i].dtype(), tensors[i].shape()), tensors[i], on_cpu[i],
                   tolerance_for(tensors[i].dtype()));
    }
  }
  Tensor found = Tensor::ones({1}, DType::F32, kGpu);
  gpu().unscale_and_check_finite({Tensor::ones({10}, DType::F32, kGpu)}, 0.5, found);
  EXPECT_EQ(found.item(), 1.0) << "a finite step leaves the flag alone";
  EXPECT_THROW(gpu().unscale_and_check_finite({Tensor::ones({10}, DType::I32, kGpu)}, 0.5, found), Error);
}

}  // namespace
}  // namespace tessera
