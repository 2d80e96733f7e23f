// The CUDA elementwise, reduction, random and embedding kernels (core/cuda/elementwise.cu,
// reduce.cu, random.cu, embedding.cu) against the CPU reference kernels, called through the
// backends on the same fresh random inputs. GPU outputs are poisoned with NaN first. Results
// must agree within tolerance_for(dtype), or exactly where the kernel is exact: comparisons,
// max/min, argmax, gathers, uniform and dropout bits. Sizes are odd and some views start one
// element in, so the vector paths, their tails and the unaligned fallbacks all run; strided
// and broadcast views are made by the same view calls on both devices.
// With TESSERA_REPORT_ERRORS=1 every comparison prints its relative error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/ops/ops.h"
#include "support/gpu.h"

namespace tessera {
namespace {

using testing::poisoned;
using testing::relative_error;
using testing::tolerance_for;

const Device kGpu = Device::cuda(0);

Backend& cpu() { return backend_for(Device::cpu()); }
Backend& gpu() { return backend_for(kGpu); }

// The same values on the host (reference) and on the GPU.
struct Both {
  Tensor cpu, gpu;
};

Both both(const Tensor& host) { return {host, host.to(kGpu)}; }

template <typename F>
Both view(const Both& t, F f) {
  return {f(t.cpu), f(t.gpu)};
}

Both random_normal(const Shape& shape, DType dtype, Generator& g, double stddev = 1.0, double mean = 0.0) {
  return both(affine(randn(shape, g, DType::F64), stddev, mean).to(dtype));
}

Both random_uniform(const Shape& shape, DType dtype, Generator& g, double low, double high) {
  return both(affine(rand(shape, g, DType::F64), high - low, low).to(dtype));
}

Both poisoned_both(const Shape& shape, DType dtype) {
  return {poisoned(shape, dtype, Device::cpu()), poisoned(shape, dtype, kGpu)};
}

// x [n] viewed one element into a buffer of n + 1: contiguous but not vector-aligned.
Both unaligned(const Both& base_plus_one, const Shape& shape) {
  return view(base_plus_one, [&](const Tensor& t) { return t.narrow(0, 1, t.numel() - 1).view(shape); });
}

bool report_errors() {
  static const bool on = [] {
    const char* flag = std::getenv("TESSERA_REPORT_ERRORS");
    return flag && flag[0] == '1';
  }();
  return on;
}

void expect_close(const std::string& what, const Tensor& got, const Tensor& want, double tolerance) {
  double error = relative_error(got, want);
  if (report_errors()) std::printf("[rel err] %-48s %.3g\n", what.c_str(), error);
  EXPECT_LE(error, tolerance) << what;
}

void expect_close(const std::string& what, const Both& t) {
  expect_close(what, t.gpu, t.cpu, tolerance_for(t.cpu.dtype()));
}

// Equal element for element, NaN equal to NaN.
void expect_same(const std::string& what, const Tensor& got, const Tensor& want) {
  std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  ASSERT_EQ(g.size(), w.size()) << what;
  size_t mismatches = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    bool same = (std::isnan(g[i]) && std::isnan(w[i])) || g[i] == w[i];
    if (!same && mismatches++ < 5) ADD_FAILURE() << what << ": element " << i << " is " << g[i] << ", want " << w[i];
  }
  if (report_errors()) std::printf("[exact  ] %-48s %zu mismatches\n", what.c_str(), mismatches);
  EXPECT_EQ(mismatches, 0u) << what;
}

void expect_same(const std::string& what, const Both& t) { expect_same(what, t.gpu, t.cpu); }

std::string name(DType dtype) { return std::string(dtype_name(dtype)); }

const char* binary_name(BinaryOp op) {
  static const char* names[] = {"add", "sub", "mul", "div", "max", "min", "eq", "gt", "lt"};
  return names[static_cast<int>(op)];
}

const char* unary_name(UnaryOp op) {
  static const char* names[] = {"neg",  "exp",  "log",  "sqrt", "rsqrt",   "abs",
                                "relu", "gelu", "silu", "tanh", "sigmoid", "square"};
  return names[static_cast<int>(op)];
}

constexpr BinaryOp kBinaryOps[] = {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Max,
                                   BinaryOp::Min, BinaryOp::Eq,  BinaryOp::Gt,  BinaryOp::Lt};
constexpr UnaryOp kUnaryOps[] = {UnaryOp::Neg,   UnaryOp::Exp,  UnaryOp::Log,     UnaryOp::Sqrt,
                                 UnaryOp::Rsqrt, UnaryOp::Abs,  UnaryOp::Relu,    UnaryOp::Gelu,
                                 UnaryOp::Silu,  UnaryOp::Tanh, UnaryOp::Sigmoid, UnaryOp::Square};

bool is_comparison(BinaryOp op) { return op == BinaryOp::Eq || op == BinaryOp::Gt || op == BinaryOp::Lt; }

// Runs binary on both devices into a poisoned out (or a view of one) and compares.
void check_binary(const std::string& what, BinaryOp op, const Both& a, const Both& b, Both out) {
  cpu().binary(op, a.cpu, b.cpu, out.cpu);
  gpu().binary(op, a.gpu, b.gpu, out.gpu);
  if (is_comparison(op) || op == BinaryOp::Max || op == BinaryOp::Min || !is_floating(out.cpu.dtype())) {
    expect_same(what, out);
  } else {
    expect_close(what, out);
  }
}

// ---- binary ----

TEST(GpuElementwise, BinaryMatchesCpuContiguousBroadcastAndStrided) {
  TS_REQUIRE_GPU();
  Generator g(11);
  for (DType dtype : {DType::F32, DType::BF16, DType::F64}) {
    for (BinaryOp op : kBinaryOps) {
      std::string tag = std::string(binary_name(op)) + " " + name(dtype);
      Both a = random_normal({37, 1001}, dtype, g);
      Both b =
          op == BinaryOp::Div ? random_uniform({37, 1001}, dtype, g, 0.5, 2.0) : random_normal({37, 1001}, dtype, g);
      if (op == BinaryOp::Eq) {  // half the rows equal
        Tensor host = a.cpu.clone();
        host.narrow(0, 0, 18).copy_(b.cpu.narrow(0, 0, 18));
        b = both(host);
      }
      check_binary(tag + " contiguous", op, a, b, poisoned_both({37, 1001}, dtype));

      Both a1 = random_normal({37 * 1001 + 1}, dtype, g);
      Both b1 = random_uniform({37 * 1001 + 1}, dtype, g, 0.5, 2.0);
      check_binary(tag + " unaligned", op, unaligned(a1, {37, 1001}), unaligned(b1, {37, 1001}),
                   poisoned_both({37, 1001}, dtype));

      Both row = random_normal({64, 1, 33}, dtype, g);
      Both col = op == BinaryOp::Div ? random_uniform({17, 1}, dtype, g, 0.5, 2.0) : random_normal({17, 1}, dtype, g);
      check_binary(tag + " broadcast", op,
                   view(row,
                        [](const Tensor& t) {
                          return t.expand({64, 17, 33});
                        }),
                   view(col,
                        [](const Tensor& t) {
                          return t.expand({64, 17, 33});
                        }),
                   poisoned_both({64, 17, 33}, dtype));

      // Broadcasts along whole rows take the vector kernel (bias, per-row scale); an unaligned
      // bias falls back to the element kernel.
      Both x = random_normal({96, 768}, dtype, g), divisor = random_uniform({96, 768}, dtype, g, 0.5, 2.0);
      Both bias = op == BinaryOp::Div ? random_uniform({769}, dtype, g, 0.5, 2.0) : random_normal({769}, dtype, g);
      for (int64_t start : {0, 1}) {
        check_binary(tag + (start ? " bias broadcast unaligned" : " bias broadcast"), op, x,
                     view(bias,
                          [&](const Tensor& t) {
                            return t.narrow(0, start, 768).expand({96, 768});
                          }),
                     poisoned_both({96, 768}, dtype));
      }
      Both per_row = random_normal({96, 1}, dtype, g);
      check_binary(tag + " row broadcast", op,
                   view(per_row,
                        [](const Tensor& t) {
                          return t.expand({96, 768});
                        }),
                   op == BinaryOp::Div ? divisor : x, poisoned_both({96, 768}, dtype));

      Both at = random_normal({33, 64}, dtype, g);
      Both bt = op == BinaryOp::Div ? random_uniform({64, 33}, dtype, g, 0.5, 2.0) : random_normal({64, 33}, dtype, g);
      Both out_base = poisoned_both({33, 64}, dtype);
      auto transpose = [](const Tensor& t) { return t.transpose(0, 1); };
      check_binary(tag + " transposed in and out", op, view(at, transpose), bt, view(out_base, transpose));
    }
  }
}

TEST(GpuElementwise, ComparisonsWriteBool) {
  TS_REQUIRE_GPU();
  Generator g(12);
  for (DType dtype : {DType::F32, DType::BF16}) {
    Both a = random_normal({5000}, dtype, g);
    Both b = both(a.cpu.clone());
    b.cpu.narrow(0, 0, 2500).copy_(randn({2500}, g).to(dtype));
    b.gpu = b.cpu.to(kGpu);
    for (BinaryOp op : {BinaryOp::Eq, BinaryOp::Gt, BinaryOp::Lt}) {
      check_binary(std::string(binary_name(op)) + " " + name(dtype) + " -> bool", op, a, b,
                   poisoned_both({5000}, DType::Bool));
    }
  }
}

TEST(GpuElementwise, MaxMinPropagateNanLikeTheCpu) {
  TS_REQUIRE_GPU();
  std::vector<float> av = {1, NAN, 3, NAN, -2, 0}, bv = {NAN, 2, 1, NAN, -3, 0};
  Both a = both(Tensor::from_vector(av, {6})), b = both(Tensor::from_vector(bv, {6}));
  for (BinaryOp op : {BinaryOp::Max, BinaryOp::Min}) {
    check_binary(std::string(binary_name(op)) + " with NaN", op, a, b, poisoned_both({6}, DType::F32));
  }
}

TEST(GpuElementwise, IntegerBinaryIsExactAndDivisionByZeroThrows) {
  TS_REQUIRE_GPU();
  std::vector<int64_t> av, bv;
  for (int64_t i = 0; i < 3001; ++i) {
    av.push_back((i * 7919) % 2001 - 1000);
    int64_t d = (i * 104729) % 41 - 20;
    bv.push_back(d == 0 ? 3 : d);
  }
  for (DType dtype : {DType::I32, DType::I64}) {
    Both a = both(Tensor::from_vector(av, {3001}).to(dtype)), b = both(Tensor::from_vector(bv, {3001}).to(dtype));
    for (BinaryOp op : kBinaryOps) {
      check_binary(std::string(binary_name(op)) + " " + name(dtype), op, a, b, poisoned_both({3001}, dtype));
    }
    Both zero = both(Tensor::from_vector(std::vector<int64_t>{4, 0, 2}, {3}).to(dtype));
    Both num = both(Tensor::from_vector(std::vector<int64_t>{8, 1, 2}, {3}).to(dtype));
    Tensor out = poisoned({3}, dtype, kGpu);
    EXPECT_THROW(gpu().binary(BinaryOp::Div, num.gpu, zero.gpu, out), Error);
  }
}

// ---- unary, affine, pow ----

// Inputs where every unary op is defined: positive for log/sqrt/rsqrt.
Both unary_input(UnaryOp op, const Shape& shape, DType dtype, Generator& g) {
  if (op == UnaryOp::Log || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt)
    return random_uniform(shape, dtype, g, 0.1, 3.0);
  return random_normal(shape, dtype, g, 2.0);
}

TEST(GpuElementwise, UnaryAndBackwardMatchCpuForEveryOp) {
  TS_REQUIRE_GPU();
  Generator g(13);
  for (DType dtype : {DType::F32, DType::BF16, DType::F64}) {
    for (UnaryOp op : kUnaryOps) {
      for (bool aligned : {true, false}) {
        std::string tag = std::string(unary_name(op)) + " " + name(dtype) + (aligned ? "" : " unaligned");
        Both x = unary_input(op, {aligned ? 4099 : 4100}, dtype, g);
        Both dy = random_normal({aligned ? 4099 : 4100}, dtype, g);
        if (!aligned) x = unaligned(x, {4099}), dy = unaligned(dy, {4099});
        Both y = poisoned_both({4099}, dtype);
        cpu().unary(op, x.cpu, y.cpu);
        gpu().unary(op, x.gpu, y.gpu);
        expect_close("unary " + tag, y);
        Both dx = poisoned_both({4099}, dtype);
        cpu().unary_backward(op, x.cpu, dy.cpu, dx.cpu);
        gpu().unary_backward(op, x.gpu, dy.gpu, dx.gpu);
        expect_close("unary_backward " + tag, dx);
      }
    }
  }
}

TEST(GpuElementwise, UnaryMayWriteInPlace) {
  TS_REQUIRE_GPU();
  Generator g(14);
  Both x = random_normal({1000}, DType::BF16, g);
  Both want = poisoned_both({1000}, DType::BF16);
  cpu().unary(UnaryOp::Gelu, x.cpu, want.cpu);
  gpu().unary(UnaryOp::Gelu, x.gpu, x.gpu);
  expect_close("gelu in place", x.gpu, want.cpu, tolerance_for(DType::BF16));
}

TEST(GpuElementwise, AffineAndPowMatchCpu) {
  TS_REQUIRE_GPU();
  Generator g(15);
  for (DType dtype : {DType::F32, DType::BF16}) {
    Both x = random_normal({123457}, dtype, g);
    Both y = poisoned_both({123457}, dtype);
    cpu().affine(x.cpu, 0.37, -1.25, y.cpu);
    gpu().affine(x.gpu, 0.37, -1.25, y.gpu);
    expect_close("affine " + name(dtype), y);
    Both positive = random_uniform({123457}, dtype, g, 0.1, 3.0);
    for (double exponent : {2.0, 0.5, -1.5, 3.0}) {
      Both p = poisoned_both({123457}, dtype);
      const Both& input = exponent == 3.0 ? x : positive;
      cpu().pow(input.cpu, exponent, p.cpu);
      gpu().pow(input.gpu, exponent, p.gpu);
      expect_close("pow " + std::to_string(exponent) + " " + name(dtype), p);
    }
  }
}

// ---- axpy, swiglu ----

TEST(GpuElementwise, AxpyMixesDtypesAndAcceptsAStridedY) {
  TS_REQUIRE_GPU();
  Generator g(16);
  const std::pair<DType, DType> pairs[] = {
      {DType::F32, DType::F32}, {DType::BF16, DType::F32}, {DType::F32, DType::BF16}, {DType::BF16, DType::BF16}};
  for (auto [xd, yd] : pairs) {
    std::string tag = "axpy x " + name(xd) + " y " + name(yd);
    Both x = random_normal({301, 77}, xd, g);
    Both y = random_normal({301, 77}, yd, g);
    cpu().axpy(-0.7, x.cpu, y.cpu);
    gpu().axpy(-0.7, x.gpu, y.gpu);
    expect_close(tag, y);
    Both y_base = random_normal({77, 301}, yd, g);
    auto transpose = [](const Tensor& t) { return t.transpose(0, 1); };
    cpu().axpy(1.5, x.cpu, transpose(y_base.cpu));
    gpu().axpy(1.5, x.gpu, transpose(y_base.gpu));
    expect_close(tag + " strided y", y_base);
  }
}

TEST(GpuElementwise, SwigluAndBackwardMatchCpu) {
  TS_REQUIRE_GPU();
  Generator g(17);
  for (DType dtype : {DType::F32, DType::BF16}) {
    for (bool aligned : {true, false}) {
      std::string tag = name(dtype) + (aligned ? "" : " unaligned");
      Shape shape{513, 37};
      int64_t n = 513 * 37 + (aligned ? 0 : 1);
      Both gate = random_normal({n}, dtype, g, 2.0), up = random_normal({n}, dtype, g),
           dout = random_normal({n}, dtype, g);
      auto shaped = [&](const Both& t) {
        return aligned ? view(t, [&](const Tensor& v) { return v.view(shape); }) : unaligned(t, shape);
      };
      gate = shaped(gate), up = shaped(up), dout = shaped(dout);
      Both out = poisoned_both(shape, dtype), dgate = poisoned_both(shape, dtype), dup = poisoned_both(shape, dtype);
      cpu().swiglu(gate.cpu, up.cpu, out.cpu);
      gpu().swiglu(gate.gpu, up.gpu, out.gpu);
      expect_close("swiglu " + tag, out);
      cpu().swiglu_backward(gate.cpu, up.cpu, dout.cpu, dgate.cpu, dup.cpu);
      gpu().swiglu_backward(gate.gpu, up.gpu, dout.gpu, dgate.gpu, dup.gpu);
      expect_close("swiglu_backward dgate " + tag, dgate);
      expect_close("swiglu_backward dup " + tag, dup);
    }
  }
}

// The packed form (h [R, 2F]: gate then up per row), with F a multiple of the vector width and not.
TEST(GpuElementwise, PackedSwigluAndBackwardMatchCpu) {
  TS_REQUIRE_GPU();
  Generator g(18);
  for (DType dtype : {DType::F32, DType::BF16}) {
    for (int64_t F : {64, 37}) {
      std::string tag = name(dtype) + " F " + std::to_string(F);
      Both h = random_normal({129, 2 * F}, dtype, g, 2.0), dout = random_normal({129, F}, dtype, g);
      Both out = poisoned_both({129, F}, dtype), dh = poisoned_both({129, 2 * F}, dtype);
      cpu().swiglu_packed(h.cpu, out.cpu);
      gpu().swiglu_packed(h.gpu, out.gpu);
      expect_close("swiglu_packed " + tag, out);
      cpu().swiglu_packed_backward(h.cpu, dout.cpu, dh.cpu);
      gpu().swiglu_packed_backward(h.gpu, dout.gpu, dh.gpu);
      expect_close("swiglu_packed_backward " + tag, dh);
    }
  }
}

// ---- reductions ----

TEST(GpuReduce, RowReductionsMatchCpuForEveryShapeClass) {
  TS_REQUIRE_GPU();
  Generator g(21);
  // Warp rows, block rows, few long rows (split into pieces), one huge row, odd widths.
  const Shape shapes[] = {{7, 5}, {33, 3000}, {300, 2048}, {3, 200000}, {1, 1 << 20}, {2, 1000003}, {4, 0}, {0, 9}};
  for (DType dtype : {DType::F32, DType::BF16, DType::F64}) {
    for (const Shape& shape : shapes) {
      for (RowReduceOp op : {RowReduceOp::Sum, RowReduceOp::Max, RowReduceOp::Min}) {
        if (op != RowReduceOp::Sum && shape[1] == 0) continue;
        std::string tag = std::string(op == RowReduceOp::Sum   ? "sum"
                                      : op == RowReduceOp::Max ? "max"
                                                            : "min") +
                          " " + name(dtype) + " " + shape_str(shape);
        Both x = random_normal(shape, dtype, g);
        Both out = poisoned_both({shape[0]}, dtype);
        cpu().reduce_rows(op, x.cpu, out.cpu);
        gpu().reduce_rows(op, x.gpu, out.gpu);
        if (op == RowReduceOp::Sum) {
          expect_close(tag, out);
        } else {
          expect_same(tag, out);
        }
      }
    }
  }
}

TEST(GpuReduce, UnalignedRowsAndNanPropagation) {
  TS_REQUIRE_GPU();
  Generator g(22);
  Both base = random_normal({40 * 4096 + 1}, DType::BF16, g);
  Both x = unaligned(base, {40, 4096});
  for (RowReduceOp op : {RowReduceOp::Sum, RowReduceOp::Max}) {
    Both out = poisoned_both({40}, DType::BF16);
    cpu().reduce_rows(op, x.cpu, out.cpu);
    gpu().reduce_rows(op, x.gpu, out.gpu);
    op == RowReduceOp::Sum ? expect_close("sum bf16 unaligned", out) : expect_same("max bf16 unaligned", out);
  }
  Tensor host = randn({6, 5000}, g);
  host.narrow(0, 1, 1).narrow(1, 4321, 1).fill_(NAN);
  host.narrow(0, 4, 1).narrow(1, 0, 1).fill_(NAN);
  Both nan_rows = both(host);
  for (RowReduceOp op : {RowReduceOp::Sum, RowReduceOp::Max, RowReduceOp::Min}) {
    Both out = poisoned_both({6}, DType::F32);
    cpu().reduce_rows(op, nan_rows.cpu, out.cpu);
    gpu().reduce_rows(op, nan_rows.gpu, out.gpu);
    std::vector<float> got = out.gpu.to_vector<float>(), want = out.cpu.to_vector<float>();
    EXPECT_TRUE(std::isnan(got[1]) && std::isnan(got[4])) << "rows holding a NaN";
    for (size_t r : {0, 2, 3, 5}) EXPECT_NEAR(got[r], want[r], 1e-5 * std::abs(want[r])) << "row " << r;
  }
}

TEST(GpuReduce, ArgmaxTakesTheFirstMaximumAndNan) {
  TS_REQUIRE_GPU();
  Generator g(23);
  for (DType dtype : {DType::F32, DType::BF16}) {
    for (const Shape& shape : {Shape{7, 5}, Shape{33, 3000}, Shape{4, 50257}, Shape{3, 4096}}) {
      // Few distinct values: many ties, so "first" is tested.
      Tensor host = affine(rand(shape, g, DType::F64), 5.0, 0.0).to(DType::I64).to(dtype);
      host.narrow(0, 1, 1).narrow(1, shape[1] - 1, 1).fill_(NAN);
      host.narrow(0, 1, 1).narrow(1, shape[1] / 2, 1).fill_(NAN);
      Both x = both(host);
      Both out = poisoned_both({shape[0]}, DType::I64);
      cpu().argmax_rows(x.cpu, out.cpu);
      gpu().argmax_rows(x.gpu, out.gpu);
      expect_same("argmax " + name(dtype) + " " + shape_str(shape), out);
      Both noisy = random_normal(shape, dtype, g);
      cpu().argmax_rows(noisy.cpu, out.cpu);
      gpu().argmax_rows(noisy.gpu, out.gpu);
      expect_same("argmax noisy " + name(dtype) + " " + shape_str(shape), out);
    }
  }
}

// ---- random ----

TEST(GpuRandom, UniformIsBitIdenticalToTheCpu) {
  TS_REQUIRE_GPU();
  for (PhiloxState state : {PhiloxState{1234, 7}, PhiloxState{0x123456789abcdefull, 0xfedcba9876ull}}) {
    for (DType dtype : {DType::F32, DType::BF16, DType::F16, DType::F64}) {
      Both t = poisoned_both({1001, 7}, dtype);
      cpu().fill_uniform(t.cpu, state, -2.0, 3.0);
      gpu().fill_uniform(t.gpu, state, -2.0, 3.0);
      expect_same("uniform " + name(dtype), t);
      Both base = poisoned_both({7, 1001}, dtype);
      cpu().fill_uniform(base.cpu.transpose(0, 1), state, 0.0, 1.0);
      gpu().fill_uniform(base.gpu.transpose(0, 1), state, 0.0, 1.0);
      expect_same("uniform strided " + name(dtype), base);
    }
  }
}

TEST(GpuRandom, NormalMatchesTheCpu) {
  TS_REQUIRE_GPU();
  PhiloxState state{99, 0x100000003ull};
  for (DType dtype : {DType::F32, DType::BF16, DType::F64}) {
    Both t = poisoned_both({100003}, dtype);
    cpu().fill_normal(t.cpu, state, 0.5, 2.0);
    gpu().fill_normal(t.gpu, state, 0.5, 2.0);
    expect_close("normal " + name(dtype), t);
    Both base = poisoned_both({9, 333}, dtype);
    cpu().fill_normal(base.cpu.transpose(0, 1), state, 0.0, 1.0);
    gpu().fill_normal(base.gpu.transpose(0, 1), state, 0.0, 1.0);
    expect_close("normal strided " + name(dtype), base);
  }
}

TEST(GpuRandom, DropoutMaskAndValuesAreBitIdenticalToTheCpu) {
  TS_REQUIRE_GPU();
  Generator g(31);
  for (DType dtype : {DType::F32, DType::BF16, DType::F64}) {
    for (double p : {0.1, 0.5, 0.9, 1e-9}) {
      for (bool aligned : {true, false}) {
        std::string tag = name(dtype) + " p " + std::to_string(p) + (aligned ? "" : " unaligned");
        PhiloxState state = g.next();
        Both x = random_normal({aligned ? 10007 : 10008}, dtype, g);
        if (!aligned) x = unaligned(x, {10007});
        Both out = poisoned_both({10007}, dtype);
        cpu().dropout(x.cpu, p, state, out.cpu);
        gpu().dropout(x.gpu, p, state, out.gpu);
        expect_same("dropout " + tag, out);
        // The mask alone, from x = 1.
        Both ones = both(Tensor::ones({10007}, dtype));
        cpu().dropout(ones.cpu, p, state, out.cpu);
        gpu().dropout(ones.gpu, p, state, out.gpu);
        expect_same("dropout mask " + tag, out);
      }
    }
  }
  // Enough elements that every resident GPU thread takes several groups (and the bf16 fast
  // division its rare exact fallbacks).
  for (DType dtype : {DType::BF16, DType::F32}) {
    PhiloxState state = g.next();
    Both big = random_normal({3000017}, dtype, g);
    Both big_out = poisoned_both({3000017}, dtype);
    cpu().dropout(big.cpu, 0.1, state, big_out.cpu);
    gpu().dropout(big.gpu, 0.1, state, big_out.gpu);
    expect_same("dropout 3000017 " + name(dtype), big_out);
  }
  Both x = random_normal({100}, DType::F32, g);
  Both out = poisoned_both({100}, DType::F32);
  gpu().dropout(x.gpu, 0.0, {5, 5}, out.gpu);
  expect_same("dropout p = 0 copies", out.gpu, x.cpu);
}

// ---- embedding ----

Both random_ids(int64_t n, int64_t low, int64_t high, DType dtype, Generator& g) {
  return both(affine(rand({n}, g, DType::F64), static_cast<double>(high - low), static_cast<double>(low))
                  .to(DType::I64)
                  .to(dtype));
}

TEST(GpuEmbedding, ForwardGathersRowsLikeTheCpu) {
  TS_REQUIRE_GPU();
  Generator g(41);
  for (DType dtype : {DType::F32, DType::BF16}) {
    for (int64_t channels : {768, 33}) {
      for (DType id_dtype : {DType::I32, DType::I64}) {
        Both weight = random_normal({1000, channels}, dtype, g);
        Both ids = view(random_ids(516, 0, 1000, id_dtype, g), [](const Tensor& t) { return t.view({4, 129}); });
        Both out = poisoned_both({516, channels}, dtype);
        cpu().embedding(weight.cpu, ids.cpu, out.cpu);
        gpu().embedding(weight.gpu, ids.gpu, out.gpu);
        expect_same("embedding " + name(dtype) + " C " + std::to_string(channels) + " ids " + name(id_dtype), out);
      }
    }
  }
}

TEST(GpuEmbedding, OutOfRangeIdsThrowAndTheBackendStaysUsable) {
  TS_REQUIRE_GPU();
  Generator g(42);
  Both weight = random_normal({100, 64}, DType::F32, g);
  for (int64_t bad : {int64_t(100), int64_t(-1)}) {
    std::vector<int64_t> ids_host(50, 3);
    ids_host[17] = bad;
    Tensor ids = Tensor::from_vector(ids_host, {50}).to(kGpu);
    Tensor out = poisoned({50, 64}, DType::F32, kGpu);
    try {
      gpu().embedding(weight.gpu, ids, out);
      ADD_FAILURE() << "embedding accepted id " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("at position 17"), std::string::npos) << e.what();
    }
    Tensor dL_dweight = Tensor::zeros({100, 64}, DType::F32, kGpu);
    for (bool deterministic : {false, true}) {
      EXPECT_THROW(gpu().embedding_backward_accumulate(ids, randn({50, 64}, g).to(kGpu), dL_dweight, deterministic),
                   Error);
    }
    EXPECT_EQ(sum(dL_dweight).item(), 0.0) << "a rejected backward must not add anything";
  }
  Both ids = random_ids(50, 0, 100, DType::I64, g);
  Both out = poisoned_both({50, 64}, DType::F32);
  cpu().embedding(weight.cpu, ids.cpu, out.cpu);
  gpu().embedding(weight.gpu, ids.gpu, out.gpu);
  expect_same("embedding after an error", out);
}

// The CPU reference for the backward: in f32 for 16-bit weights (the CPU kernel rounds the
// weight row at every add, which drifts further from the exact sum than either GPU mode).
Tensor embedding_backward_reference(const Both& ids, const Both& dL_dout, const Both& dL_dweight) {
  Tensor dw = dL_dweight.cpu.to(DType::F32).clone();
  cpu().embedding_backward_accumulate(ids.cpu, dL_dout.cpu.to(DType::F32), dw, true);
  return dw.to(dL_dweight.cpu.dtype());
}

TEST(GpuEmbedding, BackwardIsCloseToTheCpuAndDeterministicModeIsBitwiseRepeatable) {
  TS_REQUIRE_GPU();
  Generator g(43);
  for (DType dtype : {DType::F32, DType::BF16}) {
    for (int64_t channels : {768, 33, 64}) {
      for (int distribution = 0; distribution < 3; ++distribution) {
        // Spread ids, heavy repeats (runs longer than a row batch), half the batch one id (padding).
        const int64_t tokens = 4096, vocab = 1000;
        Both ids =
            distribution == 0 ? random_ids(tokens, 0, vocab, DType::I64, g) : random_ids(tokens, 0, 50, DType::I32, g);
        if (distribution == 2) {
          ids.cpu.narrow(0, 0, tokens / 2).fill_(7);
          ids.gpu = ids.cpu.to(kGpu);
        }
        std::string tag = name(dtype) + " C " + std::to_string(channels) + " ids " + std::to_string(distribution);
        Both dL_dout = random_normal({tokens, channels}, dtype, g);
        Both dL_dweight = random_normal({vocab, channels}, dtype, g);
        Tensor want = embedding_backward_reference(ids, dL_dout, dL_dweight);

        Tensor first = dL_dweight.gpu.clone(), second = dL_dweight.gpu.clone(), atomic = dL_dweight.gpu.clone();
        gpu().embedding_backward_accumulate(ids.gpu, dL_dout.gpu, first, true);
        gpu().embedding_backward_accumulate(ids.gpu, dL_dout.gpu, second, true);
        gpu().embedding_backward_accumulate(ids.gpu, dL_dout.gpu, atomic, false);
        expect_same("embedding_backward deterministic twice " + tag, first, second);
        expect_close("embedding_backward deterministic " + tag, first, want, tolerance_for(dtype));
        expect_close("embedding_backward atomic " + tag, atomic, want, tolerance_for(dtype));
        if (dtype == DType::F32) {
          Tensor cpu_own = dL_dweight.cpu.clone();
          cpu().embedding_backward_accumulate(ids.cpu, dL_dout.cpu, cpu_own, false);
          expect_close("embedding_backward vs cpu f32 " + tag, first, cpu_own, tolerance_for(dtype));
        }
      }
    }
  }
}

// ---- bad inputs ----

TEST(GpuElementwise, BadInputsThrow) {
  TS_REQUIRE_GPU();
  Tensor a = Tensor::zeros({4, 5}, DType::F32, kGpu), b16 = Tensor::zeros({4, 5}, DType::BF16, kGpu);
  Tensor out = Tensor::zeros({4, 5}, DType::F32, kGpu);
  EXPECT_THROW(gpu().binary(BinaryOp::Add, a, Tensor::zeros({4, 6}, DType::F32, kGpu), out), Error);
  EXPECT_THROW(gpu().binary(BinaryOp::Add, a, b16, out), Error);
  EXPECT_THROW(gpu().binary(BinaryOp::Add, a, a, b16), Error);
  EXPECT_THROW(gpu().binary(BinaryOp::Add, a, a, Tensor::zeros({4, 5}, DType::Bool, kGpu)), Error);
  EXPECT_THROW(gpu().binary(BinaryOp::Add, a, Tensor::zeros({4, 5}), out), Error);  // host tensor
  Tensor t = Tensor::zeros({5, 4}, DType::F32, kGpu).transpose(0, 1);
  EXPECT_THROW(gpu().unary(UnaryOp::Exp, t, out), Error);
  EXPECT_THROW(gpu().unary(UnaryOp::Exp, a, Tensor::zeros({20}, DType::F32, kGpu)), Error);
  EXPECT_THROW(gpu().unary(UnaryOp::Exp, Tensor::zeros({4}, DType::I32, kGpu), Tensor::zeros({4}, DType::I32, kGpu)),
               Error);
  EXPECT_THROW(gpu().swiglu(a, b16, out), Error);
  EXPECT_THROW(gpu().axpy(1.0, t, out), Error);
  EXPECT_THROW(
      gpu().reduce_rows(RowReduceOp::Max, Tensor::zeros({3, 0}, DType::F32, kGpu), Tensor::zeros({3}, DType::F32, kGpu)),
      Error);
  EXPECT_THROW(gpu().reduce_rows(RowReduceOp::Sum, a, Tensor::zeros({5}, DType::F32, kGpu)), Error);
  EXPECT_THROW(gpu().reduce_rows(RowReduceOp::Sum, Tensor::zeros({2, 2, 2}, DType::F32, kGpu),
                                 Tensor::zeros({2}, DType::F32, kGpu)),
               Error);
  EXPECT_THROW(gpu().argmax_rows(a, Tensor::zeros({4}, DType::I32, kGpu)), Error);
  EXPECT_THROW(gpu().dropout(a, 1.0, {1, 1}, out), Error);
  EXPECT_THROW(gpu().dropout(a, -0.1, {1, 1}, out), Error);
  EXPECT_THROW(gpu().dropout(a, 0.5, {1, 1}, b16), Error);
  EXPECT_THROW(gpu().fill_uniform(a, {1, 1}, 2.0, 1.0), Error);
  EXPECT_THROW(gpu().fill_normal(a, {1, 1}, 0.0, -1.0), Error);
  Tensor ids = Tensor::zeros({4}, DType::I64, kGpu);
  EXPECT_THROW(gpu().embedding(Tensor::zeros({20}, DType::F32, kGpu), ids, out), Error);
  EXPECT_THROW(gpu().embedding(a, Tensor::zeros({4}, DType::F32, kGpu), out), Error);
  EXPECT_THROW(gpu().embedding(a, ids, Tensor::zeros({4, 4}, DType::F32, kGpu)), Error);
}

}  // namespace
}  // namespace tessera
