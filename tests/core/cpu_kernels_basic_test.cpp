// Tests of the CPU reference kernels (core/cpu) called directly through CpuBackend, each against
// something computed independently: published Philox answers, sample moments, hand loops,
// naive triple-loop GEMM (exact on small integers) and central finite differences in f64.
// Strided and broadcast views are built with make_tensor so the tests do not lean on the view
// code they would otherwise share a bug with.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "core/cpu/cpu_backend.h"
#include "core/dropout_bits.h"

namespace tessera {
namespace {

// A view of `base`'s storage with explicit shape, strides and offset.
Tensor strided(const Tensor& base, Shape shape, Shape strides, int64_t offset = 0) {
  return make_tensor(base.storage(), std::move(shape), std::move(strides), offset, base.dtype());
}

std::vector<double> random_values(size_t n, double low, double high, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(low, high);
  std::vector<double> v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

std::vector<float> random_ints(size_t n, int low, int high, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> dist(low, high);
  std::vector<float> v(n);
  for (float& x : v) x = static_cast<float>(dist(rng));
  return v;
}

struct Moments {
  double mean, variance, skew, kurtosis;
};

Moments moments(const std::vector<double>& v) {
  double n = static_cast<double>(v.size()), mean = 0;
  for (double x : v) mean += x;
  mean /= n;
  double m2 = 0, m3 = 0, m4 = 0;
  for (double x : v) {
    double d = x - mean;
    m2 += d * d;
    m3 += d * d * d;
    m4 += d * d * d * d;
  }
  m2 /= n, m3 /= n, m4 /= n;
  return {mean, m2, m3 / std::pow(m2, 1.5), m4 / (m2 * m2)};
}

class CpuKernels : public ::testing::Test {
 protected:
  CpuBackend cpu_;
};

// ---- random ----

TEST(Philox, MatchesRandom123KnownAnswers) {
  // Random123 kat_vectors: philox4x32_10 with counter {c0, c1, c2, c3} and key {k0, k1}.
  auto zeros = philox4x32_10(0, 0, 0);
  EXPECT_EQ(zeros, (std::array<uint32_t, 4>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  auto ones = philox4x32_10(~0ull, ~0ull, ~0ull);
  EXPECT_EQ(ones, (std::array<uint32_t, 4>{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
}

TEST_F(CpuKernels, UniformFollowsMappingAndMoments) {
  PhiloxState state{1234, 7};
  const int64_t n = 100000;
  Tensor t = Tensor::empty({n}, DType::F32);
  cpu_.fill_uniform(t, state, -1.0, 3.0);
  std::vector<float> v = t.to_vector<float>();
  for (int64_t i : {0, 1, 2, 3, 4, 99999}) {
    float u = static_cast<float>(philox4x32_10(1234, static_cast<uint64_t>(i) / 4, 7)[i % 4] >> 8) / 16777216.0f;
    EXPECT_EQ(v[i], std::fma(4.0f, u, -1.0f)) << "element " << i;
  }
  std::vector<double> d(v.begin(), v.end());
  for (double x : d) ASSERT_TRUE(x >= -1.0 && x < 3.0) << x;
  Moments m = moments(d);
  EXPECT_NEAR(m.mean, 1.0, 0.02);              // sd of the mean: 4/sqrt(12 n) = 0.0037
  EXPECT_NEAR(m.variance, 16.0 / 12.0, 0.02);  // sd: about 0.004

  Tensor again = Tensor::empty({n}, DType::F32);
  cpu_.fill_uniform(again, state, -1.0, 3.0);
  EXPECT_EQ(again.to_vector<float>(), v);
  cpu_.fill_uniform(again, PhiloxState{1234, 8}, -1.0, 3.0);
  EXPECT_NE(again.to_vector<float>(), v);
}

TEST_F(CpuKernels, NormalUsesTwoWordsPerElementAndHasGaussianMoments) {
  PhiloxState state{99, 3};
  const int64_t n = 100000;
  Tensor t = Tensor::empty({n}, DType::F64);
  cpu_.fill_normal(t, state, 2.0, 0.5);
  std::vector<double> v = t.to_vector<double>();
  for (int64_t i : {0, 1, 2, 3, 12345}) {
    auto block = philox4x32_10(99, static_cast<uint64_t>(i) / 2, 3);
    uint32_t w1 = block[i % 2 == 0 ? 0 : 2], w2 = block[i % 2 == 0 ? 1 : 3];
    double u1 = ((w1 >> 8) + 1) / 16777216.0, u2 = (w2 >> 8) / 16777216.0;
    double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
    EXPECT_NEAR(v[i], 2.0 + 0.5 * z, 1e-14) << "element " << i;
  }
  Moments m = moments(v);
  EXPECT_NEAR(m.mean, 2.0, 0.01);  // sd of the mean: 0.0016
  EXPECT_NEAR(std::sqrt(m.variance), 0.5, 0.01);
  EXPECT_NEAR(m.skew, 0.0, 0.05);
  EXPECT_NEAR(m.kurtosis, 3.0, 0.1);

  Tensor f32 = Tensor::empty({4}, DType::F32);
  cpu_.fill_normal(f32, state, 2.0, 0.5);
  std::vector<float> head = f32.to_vector<float>();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(head[i], static_cast<float>(v[i]));
}

TEST_F(CpuKernels, DropoutKeepsFractionScalesAndReplays) {
  const int64_t n = 100000;
  const double p = 0.3;
  PhiloxState state{5, 11};
  Tensor x = Tensor::full({n}, 1.0, DType::F32);
  Tensor out = Tensor::empty({n}, DType::F32);
  cpu_.dropout(x, p, state, out);
  std::vector<float> y = out.to_vector<float>();
  int64_t kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    bool keep = dropout_bits(state, static_cast<uint64_t>(i)) >= dropout_threshold(p);
    uint32_t word = philox_word(state, static_cast<uint64_t>(i / 2));  // the map written out
    ASSERT_EQ(keep, (i % 2 == 0 ? word >> 16 : word & 0xFFFF) / 65536.0 >= p) << "element " << i;
    ASSERT_EQ(y[i], keep ? 1.0f / 0.7f : 0.0f) << "element " << i;
    kept += keep;
  }
  EXPECT_NEAR(static_cast<double>(kept) / n, 0.7, 0.01);  // sd: 0.0014

  // Same state: the backward pass (x = dL_dy) drops the same elements.
  std::vector<double> g = random_values(n, 1.0, 2.0, 1);
  Tensor dy = Tensor::from_vector(g, {n});
  Tensor dx = Tensor::empty({n}, DType::F64);
  cpu_.dropout(dy, p, state, dx);
  std::vector<double> gx = dx.to_vector<double>();
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(gx[i] != 0.0, y[i] != 0.0f) << "element " << i;

  cpu_.dropout(x, 0.0, state, out);
  EXPECT_EQ(out.to_vector<float>(), std::vector<float>(n, 1.0f));
  EXPECT_THROW(cpu_.dropout(x, 1.0, state, out), Error);
}

// ---- elementwise ----

TEST_F(CpuKernels, BinaryBroadcastsThroughStridesLikeHandLoops) {
  std::vector<double> av = random_values(24, -2.0, 2.0, 2), bv = random_values(3, -2.0, 2.0, 3);
  bv[1] = av[5];  // an exact tie for Eq/Max/Min
  Tensor a = Tensor::from_vector(av, {2, 3, 4});
  Tensor b = strided(Tensor::from_vector(bv, {3}), {2, 3, 4}, {0, 1, 0});  // b[j] broadcast
  auto reference = [](BinaryOp op, double x, double y) {
    switch (op) {
      case BinaryOp::Add: return x + y;
      case BinaryOp::Sub: return x - y;
      case BinaryOp::Mul: return x * y;
      case BinaryOp::Div: return x / y;
      case BinaryOp::Max: return std::max(x, y);
      case BinaryOp::Min: return std::min(x, y);
      case BinaryOp::Eq: return x == y ? 1.0 : 0.0;
      case BinaryOp::Gt: return x > y ? 1.0 : 0.0;
      case BinaryOp::Lt: return x < y ? 1.0 : 0.0;
    }
    return 0.0;
  };
  for (BinaryOp op : {BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Max, BinaryOp::Min,
                      BinaryOp::Eq, BinaryOp::Gt, BinaryOp::Lt}) {
    Tensor out = Tensor::empty({2, 3, 4}, DType::F64);
    cpu_.binary(op, a, b, out);
    std::vector<double> got = out.to_vector<double>();
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j)
        for (int k = 0; k < 4; ++k) {
          int idx = (i * 3 + j) * 4 + k;
          EXPECT_EQ(got[idx], reference(op, av[idx], bv[j])) << "op " << static_cast<int>(op) << " at " << idx;
        }
  }
  Tensor mask = Tensor::empty({2, 3, 4}, DType::Bool);
  cpu_.binary(BinaryOp::Gt, a, b, mask);
  std::vector<bool> gt = mask.to_vector<bool>();
  for (int idx = 0; idx < 24; ++idx) EXPECT_EQ(gt[idx], av[idx] > bv[(idx / 4) % 3]);
}

TEST_F(CpuKernels, BinaryWritesStridedOutputsAndHandlesIntegersAndNan) {
  // out [2, 3] is the transposed view of a [3, 2] buffer: out[i][j] lives at i + 2 * j.
  Tensor a = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector(std::vector<float>{10, 20, 30, 40, 50, 60}, {2, 3});
  Tensor buffer = Tensor::zeros({3, 2}, DType::F32);
  cpu_.binary(BinaryOp::Add, a, b, strided(buffer, {2, 3}, {1, 2}));
  EXPECT_EQ(buffer.to_vector<float>(), (std::vector<float>{11, 44, 22, 55, 33, 66}));

  Tensor ia = Tensor::from_vector(std::vector<int64_t>{7, -7, (int64_t{1} << 40) + 1}, {3});
  Tensor ib = Tensor::from_vector(std::vector<int64_t>{2, 2, 1}, {3});
  Tensor iout = Tensor::empty({3}, DType::I64);
  cpu_.binary(BinaryOp::Div, ia, ib, iout);
  EXPECT_EQ(iout.to_vector<int64_t>(), (std::vector<int64_t>{3, -3, (int64_t{1} << 40) + 1}));
  cpu_.binary(BinaryOp::Mul, ia, ib, iout);  // exact beyond f32's 24 bits
  EXPECT_EQ(iout.to_vector<int64_t>(), (std::vector<int64_t>{14, -14, (int64_t{1} << 40) + 1}));

  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor na = Tensor::from_vector(std::vector<float>{nan, 1}, {2});
  Tensor nb = Tensor::from_vector(std::vector<float>{1, nan}, {2});
  Tensor nout = Tensor::empty({2}, DType::F32);
  for (BinaryOp op : {BinaryOp::Max, BinaryOp::Min}) {
    cpu_.binary(op, na, nb, nout);
    for (float v : nout.to_vector<float>()) EXPECT_TRUE(std::isnan(v));
  }
  EXPECT_THROW(cpu_.binary(BinaryOp::Add, a, Tensor::empty({3}, DType::F32), Tensor::empty({2, 3})), Error);
}

double unary_reference(UnaryOp op, double x) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return std::exp(x);
    case UnaryOp::Log: return std::log(x);
    case UnaryOp::Sqrt: return std::sqrt(x);
    case UnaryOp::Rsqrt: return 1.0 / std::sqrt(x);
    case UnaryOp::Abs: return std::fabs(x);
    case UnaryOp::Relu: return std::max(x, 0.0);
    case UnaryOp::Gelu: return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / std::numbers::pi) * (x + 0.044715 * std::pow(x, 3))));
    case UnaryOp::Silu: return x / (1.0 + std::exp(-x));
    case UnaryOp::Tanh: return std::tanh(x);
    case UnaryOp::Sigmoid: return 1.0 / (1.0 + std::exp(-x));
    case UnaryOp::Square: return x * x;
  }
  return 0.0;
}

constexpr UnaryOp kUnaryOps[] = {UnaryOp::Neg,  UnaryOp::Exp,  UnaryOp::Log,     UnaryOp::Sqrt,
                                 UnaryOp::Rsqrt, UnaryOp::Abs, UnaryOp::Relu,    UnaryOp::Gelu,
                                 UnaryOp::Silu, UnaryOp::Tanh, UnaryOp::Sigmoid, UnaryOp::Square};

bool positive_domain(UnaryOp op) { return op == UnaryOp::Log || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt; }

// Points away from the kinks of Relu/Abs and inside the domain of Log/Sqrt/Rsqrt.
std::vector<double> unary_points(UnaryOp op) {
  std::vector<double> x = random_values(64, 0.1, 3.0, 4);
  if (!positive_domain(op))
    for (size_t i = 0; i < x.size(); i += 2) x[i] = -x[i];
  return x;
}

TEST_F(CpuKernels, UnaryMatchesStdFormulas) {
  for (UnaryOp op : kUnaryOps) {
    std::vector<double> xv = unary_points(op);
    int64_t n = static_cast<int64_t>(xv.size());
    Tensor out = Tensor::empty({n}, DType::F64);
    cpu_.unary(op, Tensor::from_vector(xv, {n}), out);
    std::vector<double> got = out.to_vector<double>();
    for (int64_t i = 0; i < n; ++i)
      EXPECT_NEAR(got[i], unary_reference(op, xv[i]), 1e-14 * (1 + std::fabs(got[i]))) << static_cast<int>(op);

    Tensor x32 = Tensor::from_vector(std::vector<float>(xv.begin(), xv.end()), {n});
    Tensor out32 = Tensor::empty({n}, DType::F32);
    cpu_.unary(op, x32, out32);
    std::vector<float> got32 = out32.to_vector<float>();
    for (int64_t i = 0; i < n; ++i)
      EXPECT_NEAR(got32[i], unary_reference(op, static_cast<float>(xv[i])), 1e-5 * (1 + std::fabs(got32[i])));
  }
}

TEST_F(CpuKernels, UnaryBackwardMatchesCentralDifferences) {
  const double h = 1e-6;
  for (UnaryOp op : kUnaryOps) {
    std::vector<double> xv = unary_points(op);
    std::vector<double> gv = random_values(xv.size(), -1.0, 1.0, 5);
    int64_t n = static_cast<int64_t>(xv.size());
    std::vector<double> plus(xv), minus(xv);
    for (size_t i = 0; i < xv.size(); ++i) plus[i] += h, minus[i] -= h;
    Tensor f_plus = Tensor::empty({n}, DType::F64), f_minus = Tensor::empty({n}, DType::F64);
    cpu_.unary(op, Tensor::from_vector(plus, {n}), f_plus);
    cpu_.unary(op, Tensor::from_vector(minus, {n}), f_minus);
    Tensor dx = Tensor::empty({n}, DType::F64);
    cpu_.unary_backward(op, Tensor::from_vector(xv, {n}), Tensor::from_vector(gv, {n}), dx);
    std::vector<double> fp = f_plus.to_vector<double>(), fm = f_minus.to_vector<double>(), got = dx.to_vector<double>();
    for (int64_t i = 0; i < n; ++i) {
      double numeric = gv[i] * (fp[i] - fm[i]) / (2 * h);
      EXPECT_NEAR(got[i], numeric, 1e-6 * (1 + std::fabs(numeric))) << "op " << static_cast<int>(op) << " x " << xv[i];
    }
  }
}

TEST_F(CpuKernels, SwigluAndItsBackwardMatchFormulaAndCentralDifferences) {
  const int64_t n = 32;
  const double h = 1e-6;
  std::vector<double> g = random_values(n, -3.0, 3.0, 6), u = random_values(n, -2.0, 2.0, 7);
  std::vector<double> dy = random_values(n, -1.0, 1.0, 8);
  auto f = [](double gate, double up) { return gate / (1.0 + std::exp(-gate)) * up; };
  Tensor out = Tensor::empty({n}, DType::F64);
  cpu_.swiglu(Tensor::from_vector(g, {n}), Tensor::from_vector(u, {n}), out);
  Tensor dgate = Tensor::empty({n}, DType::F64), dup = Tensor::empty({n}, DType::F64);
  cpu_.swiglu_backward(Tensor::from_vector(g, {n}), Tensor::from_vector(u, {n}), Tensor::from_vector(dy, {n}), dgate,
                       dup);
  std::vector<double> y = out.to_vector<double>(), dg = dgate.to_vector<double>(), du = dup.to_vector<double>();
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_NEAR(y[i], f(g[i], u[i]), 1e-14);
    EXPECT_NEAR(dg[i], dy[i] * (f(g[i] + h, u[i]) - f(g[i] - h, u[i])) / (2 * h), 1e-7);
    EXPECT_NEAR(du[i], dy[i] * (f(g[i], u[i] + h) - f(g[i], u[i] - h)) / (2 * h), 1e-7);
  }
}

TEST_F(CpuKernels, AffinePowAndMixedDtypeStridedAxpy) {
  Tensor x = Tensor::from_vector(std::vector<float>{1, 2, 4}, {3});
  Tensor out = Tensor::empty({3}, DType::F32);
  cpu_.affine(x, 3.0, -1.0, out);
  EXPECT_EQ(out.to_vector<float>(), (std::vector<float>{2, 5, 11}));
  cpu_.pow(x, 1.5, out);
  EXPECT_EQ(out.to_vector<float>(), (std::vector<float>{1, std::pow(2.0f, 1.5f), 8}));

  // y: column 1 of a [3, 2] f64 matrix; x: f32.
  Tensor matrix = Tensor::from_vector(std::vector<double>{0, 10, 0, 20, 0, 30}, {3, 2});
  cpu_.axpy(0.5, x, strided(matrix, {3}, {2}, 1));
  EXPECT_EQ(matrix.to_vector<double>(), (std::vector<double>{0, 10.5, 0, 21, 0, 32}));
}

// ---- memory ----

TEST_F(CpuKernels, CopyReadsPermutedAndExpandedViewsAcrossDtypes) {
  std::vector<float> v(24);
  for (int i = 0; i < 24; ++i) v[i] = static_cast<float>(i) - 5.5f;
  Tensor base = Tensor::from_vector(v, {2, 3, 4});
  // permute(2, 0, 1): shape [4, 2, 3], element [k][i][j] = base[i][j][k].
  Tensor permuted = strided(base, {4, 2, 3}, {1, 12, 4});
  Tensor as_f64 = Tensor::empty({4, 2, 3}, DType::F64);
  Tensor as_i32 = Tensor::empty({4, 2, 3}, DType::I32);
  Tensor as_bf16 = Tensor::empty({4, 2, 3}, DType::BF16);
  cpu_.copy(permuted, as_f64);
  cpu_.copy(permuted, as_i32);
  cpu_.copy(permuted, as_bf16);
  std::vector<double> d = as_f64.to_vector<double>();
  std::vector<int32_t> n = as_i32.to_vector<int32_t>();
  std::vector<BFloat16> h = as_bf16.to_vector<BFloat16>();
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 3; ++j) {
        int out = (k * 2 + i) * 3 + j;
        float expect = v[(i * 3 + j) * 4 + k];
        EXPECT_EQ(d[out], expect);
        EXPECT_EQ(n[out], static_cast<int32_t>(expect));  // truncation toward zero
        EXPECT_EQ(static_cast<float>(h[out]), expect);    // exact: halves below 2^8
      }

  // A row broadcast over 3 rows (stride 0), into the odd columns of a strided destination.
  Tensor row = Tensor::from_vector(std::vector<int64_t>{1, 0, 7}, {3});
  Tensor dst = Tensor::zeros({3, 6}, DType::F32);
  cpu_.copy(strided(row, {3, 3}, {0, 1}), strided(dst, {3, 3}, {6, 2}, 1));
  EXPECT_EQ(dst.to_vector<float>(),
            (std::vector<float>{0, 1, 0, 0, 0, 7, 0, 1, 0, 0, 0, 7, 0, 1, 0, 0, 0, 7}));
  Tensor flags = Tensor::empty({3}, DType::Bool);
  cpu_.copy(row, flags);
  EXPECT_EQ(flags.to_vector<bool>(), (std::vector<bool>{true, false, true}));
}

TEST_F(CpuKernels, FillWritesOnlyTheView) {
  Tensor matrix = Tensor::zeros({2, 3}, DType::F16);
  cpu_.fill(strided(matrix, {2}, {3}, 2), 2.5);  // last column
  EXPECT_EQ(matrix.to_vector<float>(), (std::vector<float>{0, 0, 2.5, 0, 0, 2.5}));
}

// ---- reductions ----

TEST_F(CpuKernels, ReduceRowsAndArgmaxMatchHandLoops) {
  std::vector<float> v = random_ints(60, -9, 9, 9);
  v[13] = v[17] = 20;  // a tie in row 1: first index (13 - 12 = 1) wins
  Tensor x = Tensor::from_vector(v, {5, 12});
  Tensor out = Tensor::empty({5}, DType::F32);
  Tensor idx = Tensor::empty({5}, DType::I64);
  cpu_.argmax_rows(x, idx);
  std::vector<int64_t> arg = idx.to_vector<int64_t>();
  for (RowReduceOp op : {RowReduceOp::Sum, RowReduceOp::Max, RowReduceOp::Min}) {
    cpu_.reduce_rows(op, x, out);
    std::vector<float> got = out.to_vector<float>();
    for (int r = 0; r < 5; ++r) {
      float expect = op == RowReduceOp::Sum ? 0.0f : v[r * 12];
      for (int c = 0; c < 12; ++c) {
        float e = v[r * 12 + c];
        expect = op == RowReduceOp::Sum ? expect + e : op == RowReduceOp::Max ? std::max(expect, e) : std::min(expect, e);
      }
      EXPECT_EQ(got[r], expect) << "op " << static_cast<int>(op) << " row " << r;
    }
  }
  for (int r = 0; r < 5; ++r) {
    int64_t best = 0;
    for (int c = 1; c < 12; ++c)
      if (v[r * 12 + c] > v[r * 12 + best]) best = c;
    EXPECT_EQ(arg[r], best) << "row " << r;
  }
  EXPECT_EQ(arg[1], 1);

  // f32 sums accumulate in f64: 2^24 + 1 + 1 - 2^24 is 2, not 0.
  Tensor big = Tensor::from_vector(std::vector<float>{16777216.0f, 1, 1, -16777216.0f}, {1, 4});
  Tensor sum = Tensor::empty({1}, DType::F32);
  cpu_.reduce_rows(RowReduceOp::Sum, big, sum);
  EXPECT_EQ(sum.to_vector<float>()[0], 2.0f);

  // NaN propagates through max/min and counts as the argmax.
  Tensor with_nan = Tensor::from_vector(std::vector<float>{1, std::nanf(""), 3}, {1, 3});
  for (RowReduceOp op : {RowReduceOp::Max, RowReduceOp::Min}) {
    cpu_.reduce_rows(op, with_nan, sum);
    EXPECT_TRUE(std::isnan(sum.to_vector<float>()[0])) << "op " << static_cast<int>(op);
  }
  Tensor one_idx = Tensor::empty({1}, DType::I64);
  cpu_.argmax_rows(with_nan, one_idx);
  EXPECT_EQ(one_idx.to_vector<int64_t>()[0], 1);
}

// ---- gemm ----

// c[b] = alpha * op(a[b]) op(b[b]) + beta * c[b] with a triple loop in double.
std::vector<double> naive_gemm(const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c,
                               int64_t batch, int64_t batch_a, int64_t batch_b, int64_t m, int64_t n, int64_t k,
                               const GemmArgs& args) {
  std::vector<double> out(static_cast<size_t>(batch * m * n));
  for (int64_t p = 0; p < batch; ++p)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t l = 0; l < k; ++l) {
          int64_t pa = batch_a == 1 ? 0 : p, pb = batch_b == 1 ? 0 : p;
          double av = a[pa * m * k + (args.trans_a ? l * m + i : i * k + l)];
          double bv = b[pb * k * n + (args.trans_b ? j * k + l : l * n + j)];
          acc += av * bv;
        }
        int64_t o = (p * m + i) * n + j;
        out[o] = args.alpha * acc + (args.beta == 0.0 ? 0.0 : args.beta * c[o]);
      }
  return out;
}

TEST_F(CpuKernels, GemmIsExactOnSmallIntegers) {
  const int64_t batch = 3, m = 4, n = 5, k = 6;
  uint32_t seed = 10;
  for (DType dtype : {DType::F32, DType::F64, DType::BF16})
    for (bool trans_a : {false, true})
      for (bool trans_b : {false, true})
        for (int64_t batch_a : {int64_t{1}, batch})
          for (int64_t batch_b : {int64_t{1}, batch})
            for (double beta : {0.0, 1.0}) {
              std::vector<float> av = random_ints(batch_a * m * k, -3, 3, seed++);
              std::vector<float> bv = random_ints(batch_b * k * n, -3, 3, seed++);
              std::vector<float> cv = random_ints(batch * m * n, -3, 3, seed++);
              GemmArgs args;
              args.trans_a = trans_a;
              args.trans_b = trans_b;
              args.alpha = 2.0;
              args.beta = beta;
              Tensor a = Tensor::from_vector(av, trans_a ? Shape{batch_a, k, m} : Shape{batch_a, m, k}).to(dtype);
              Tensor b = Tensor::from_vector(bv, trans_b ? Shape{batch_b, n, k} : Shape{batch_b, k, n}).to(dtype);
              Tensor c = Tensor::from_vector(cv, {batch, m, n}).to(dtype);
              if (beta == 0.0) cpu_.fill(c, std::numeric_limits<double>::quiet_NaN());  // must not be read
              cpu_.gemm(a, b, c, args);
              EXPECT_EQ(c.to_vector<double>(), naive_gemm(av, bv, cv, batch, batch_a, batch_b, m, n, k, args))
                  << dtype << " trans_a " << trans_a << " trans_b " << trans_b << " batch_a " << batch_a
                  << " batch_b " << batch_b << " beta " << beta;
            }
}

TEST_F(CpuKernels, GemmBf16WithinBf16Tolerance) {
  const int64_t m = 16, n = 24, k = 64;
  std::vector<double> ad = random_values(m * k, -1.0, 1.0, 11), bd = random_values(k * n, -1.0, 1.0, 12);
  Tensor a = Tensor::from_vector(ad, {m, k}).to(DType::BF16);
  Tensor b = Tensor::from_vector(bd, {k, n}).to(DType::BF16);
  Tensor c = Tensor::empty({m, n}, DType::BF16);
  cpu_.gemm(a, b, c, GemmArgs{});
  std::vector<float> got = c.to_vector<float>();
  std::vector<float> a16 = a.to_vector<float>(), b16 = b.to_vector<float>();  // the rounded inputs
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double exact = 0, magnitude = 0;
      for (int64_t l = 0; l < k; ++l) {
        exact += static_cast<double>(a16[i * k + l]) * b16[l * n + j];
        magnitude += std::fabs(static_cast<double>(a16[i * k + l]) * b16[l * n + j]);
      }
      // One bf16 rounding of the result (2^-8 relative) plus f32 accumulation error.
      EXPECT_NEAR(got[i * n + j], exact, std::fabs(exact) * 0x1p-8 + magnitude * 1e-6) << i << ", " << j;
    }
}

TEST_F(CpuKernels, GemmRejectsMismatchedShapes) {
  Tensor a = Tensor::empty({2, 3}), b = Tensor::empty({4, 5}), c = Tensor::empty({2, 5});
  EXPECT_THROW(cpu_.gemm(a, b, c, GemmArgs{}), Error);
  Tensor a3 = Tensor::empty({2, 2, 3}), b3 = Tensor::empty({3, 3, 5}), c3 = Tensor::empty({3, 2, 5});
  EXPECT_THROW(cpu_.gemm(a3, b3, c3, GemmArgs{}), Error);  // batch 2 neither 1 nor 3
}

// ---- embedding ----

TEST_F(CpuKernels, EmbeddingGathersRowsAndBackwardSumsRepeatedIds) {
  const int64_t vocab = 5, channels = 3;
  std::vector<float> w(vocab * channels);
  for (int64_t i = 0; i < vocab * channels; ++i) w[i] = static_cast<float>(i);
  Tensor weight = Tensor::from_vector(w, {vocab, channels});
  std::vector<int64_t> ids{3, 0, 3, 4};
  for (DType id_dtype : {DType::I64, DType::I32}) {
    Tensor id_tensor = Tensor::from_vector(ids, {4}).to(id_dtype);
    Tensor out = Tensor::empty({4, channels});
    cpu_.embedding(weight, id_tensor, out);
    std::vector<float> got = out.to_vector<float>();
    for (int64_t n = 0; n < 4; ++n)
      for (int64_t c = 0; c < channels; ++c) EXPECT_EQ(got[n * channels + c], w[ids[n] * channels + c]);

    std::vector<float> g = random_ints(4 * channels, -4, 4, 13);
    Tensor dL_dweight = Tensor::full({vocab, channels}, 1.0);  // accumulates onto what is there
    cpu_.embedding_backward_accumulate(id_tensor, Tensor::from_vector(g, {4, channels}), dL_dweight, true);
    std::vector<float> expect(vocab * channels, 1.0f);
    for (int64_t n = 0; n < 4; ++n)
      for (int64_t c = 0; c < channels; ++c) expect[ids[n] * channels + c] += g[n * channels + c];
    EXPECT_EQ(dL_dweight.to_vector<float>(), expect);
  }
  Tensor bad = Tensor::from_vector(std::vector<int64_t>{1, 5}, {2});
  try {
    cpu_.embedding(weight, bad, Tensor::empty({2, channels}));
    FAIL() << "id 5 with V = 5 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("id 5"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tessera
