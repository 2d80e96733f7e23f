// Tests of the element types (core/dtype.h, core/half.h) against independent references:
//  - Half against the compiler's _Float16 (GCC on x86-64 converts through libgcc's
//    __truncsfhf2 / __extendhfsf2, IEEE round-to-nearest-even), for every one of the 65536
//    half bit patterns (half -> float) and for a sweep of floats that hits every rounding
//    boundary of the half grid (float -> half), subnormals and overflow included;
//  - BFloat16 against a round-to-nearest-even written here in integer arithmetic on the top
//    and bottom 16 bits (a different formulation from the library's rounding-bias trick), and
//    bf16 -> float against ldexp on the decoded sign/exponent/mantissa;
//  - the dtype table (size, name, aliases) against sizeof and a hand-written table.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/half.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

uint32_t float_bits(float f) { return std::bit_cast<uint32_t>(f); }
float bits_float(uint32_t u) { return std::bit_cast<float>(u); }

// ---- Half vs _Float16 ----

#if defined(__FLT16_MAX__)
constexpr bool kHaveFloat16 = true;
float reference_half_to_float(uint16_t bits) { return static_cast<float>(std::bit_cast<_Float16>(bits)); }
uint16_t reference_float_to_half(float f) { return std::bit_cast<uint16_t>(static_cast<_Float16>(f)); }
#else
constexpr bool kHaveFloat16 = false;
float reference_half_to_float(uint16_t) { return 0.0f; }
uint16_t reference_float_to_half(float) { return 0; }
#endif

bool half_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x03ffu) != 0; }

TEST(Half, ToFloatMatchesFloat16ForAllBitPatterns) {
  if (!kHaveFloat16) GTEST_SKIP() << "this compiler has no _Float16 to compare against";
  int mismatches = 0;
  for (uint32_t i = 0; i <= 0xffffu; ++i) {
    uint16_t h = static_cast<uint16_t>(i);
    float expected = reference_half_to_float(h);
    float got = Half::to_float(h);
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got)) << "half bits 0x" << std::hex << i << " is NaN, got " << got;
      EXPECT_TRUE(half_is_nan(Half::from_float(got))) << "NaN from half bits 0x" << std::hex << i;
      continue;
    }
    // Bit equality also tells +0 from -0.
    if (float_bits(got) != float_bits(expected) && ++mismatches <= 10) {
      ADD_FAILURE() << "half bits 0x" << std::hex << i << ": got " << got << " (0x" << float_bits(got)
                    << "), _Float16 gives " << expected << " (0x" << float_bits(expected) << ")";
    }
    // Every finite half survives float -> half exactly.
    if (std::isfinite(expected)) {
      EXPECT_EQ(Half::from_float(expected), h) << "half bits 0x" << std::hex << i;
    }
  }
  EXPECT_EQ(mismatches, 0);
}

// Floats that sit on, next to and between the points of the half grid: each half value, the
// midpoint to the next one (a tie), and one float ulp either side of the midpoint, for every
// non-negative half including subnormals; then the negatives of all of them.
std::vector<float> half_boundary_floats() {
  std::vector<float> out;
  for (uint32_t h = 0; h < 0x7c00u; ++h) {
    float lo = Half::to_float(static_cast<uint16_t>(h));
    float hi = h + 1 == 0x7c00u ? 65536.0f : Half::to_float(static_cast<uint16_t>(h + 1));  // next power of two past max
    float mid = lo + (hi - lo) / 2;  // exact: half spacing is a power of two >= 2^-24
    for (float f : {lo, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e30f),
                    std::nextafter(lo, 1e30f)})
      out.push_back(f);
  }
  const float extra[] = {0.0f,
                         std::numeric_limits<float>::denorm_min(),
                         std::numeric_limits<float>::min(),
                         0x1p-25f,                     // half of the smallest half subnormal: tie to 0
                         std::nextafter(0x1p-25f, 1.0f),  // just above: rounds up to 2^-24
                         0x1.8p-24f,                   // 1.5 * 2^-24: tie to even (2 * 2^-24)
                         0x1p-14f,                     // smallest normal half
                         65504.0f,                     // largest half
                         65519.99f,                    // rounds down to 65504
                         65520.0f,                     // tie between 65504 and 65536: overflows to inf
                         65536.0f,
                         1e6f,
                         std::numeric_limits<float>::max(),
                         std::numeric_limits<float>::infinity()};
  out.insert(out.end(), std::begin(extra), std::end(extra));
  size_t n = out.size();
  for (size_t i = 0; i < n; ++i) out.push_back(-out[i]);
  return out;
}

TEST(Half, FromFloatMatchesFloat16AtEveryRoundingBoundary) {
  if (!kHaveFloat16) GTEST_SKIP() << "this compiler has no _Float16 to compare against";
  int mismatches = 0;
  std::vector<float> floats = half_boundary_floats();
  ASSERT_GT(floats.size(), 300000u);
  for (float f : floats) {
    uint16_t expected = reference_float_to_half(f);
    uint16_t got = Half::from_float(f);
    if (got != expected && ++mismatches <= 10) {
      ADD_FAILURE() << std::hexfloat << "float " << f << " (0x" << std::hex << float_bits(f) << "): got 0x" << got
                    << ", _Float16 gives 0x" << expected;
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(Half, FromFloatMatchesFloat16OnStridedSweepOfAllFloats) {
  if (!kHaveFloat16) GTEST_SKIP() << "this compiler has no _Float16 to compare against";
  int mismatches = 0;
  // A prime stride visits every exponent with varied low mantissa bits (~1M floats).
  for (uint64_t u = 0; u <= 0xffffffffull; u += 4093) {
    float f = bits_float(static_cast<uint32_t>(u));
    uint16_t got = Half::from_float(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(half_is_nan(got)) << "float bits 0x" << std::hex << u << " is NaN, got half 0x" << got;
      EXPECT_EQ(got & 0x8000u, (u >> 16) & 0x8000u) << "NaN sign, float bits 0x" << std::hex << u;
      continue;
    }
    uint16_t expected = reference_float_to_half(f);
    if (got != expected && ++mismatches <= 10) {
      ADD_FAILURE() << "float bits 0x" << std::hex << u << ": got 0x" << got << ", _Float16 gives 0x" << expected;
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(Half, NanStaysNanAndInfinityStaysInfinity) {
  for (uint32_t u : {0x7fc00000u, 0x7f800001u, 0x7fffffffu, 0xffc00000u, 0xff800001u, 0x7f802000u}) {
    uint16_t h = Half::from_float(bits_float(u));
    EXPECT_TRUE(half_is_nan(h)) << "float bits 0x" << std::hex << u << " -> half 0x" << h;
    EXPECT_TRUE(std::isnan(float(Half(bits_float(u)))));
  }
  EXPECT_EQ(Half::from_float(std::numeric_limits<float>::infinity()), 0x7c00u);
  EXPECT_EQ(Half::from_float(-std::numeric_limits<float>::infinity()), 0xfc00u);
  EXPECT_EQ(Half::to_float(0x7c00u), std::numeric_limits<float>::infinity());
}

// ---- BFloat16 ----

// Round-to-nearest-even of a non-NaN float to its top 16 bits, in integer arithmetic:
// look at the 16 bits that are dropped; above half rounds up, exactly half rounds to the
// even neighbour. A carry out of the mantissa bumps the exponent (and max float -> inf).
uint16_t reference_float_to_bf16(uint32_t u) {
  uint32_t upper = u >> 16;
  uint32_t dropped = u & 0xffffu;
  if (dropped > 0x8000u || (dropped == 0x8000u && (upper & 1u))) ++upper;
  return static_cast<uint16_t>(upper);
}

// bf16 value from its fields: (-1)^s * 2^(e - 127) * (1 + m / 128), subnormals 2^-126 * m / 128.
double reference_bf16_value(uint16_t b) {
  int sign = b >> 15;
  int exponent = (b >> 7) & 0xff;
  int mantissa = b & 0x7f;
  double magnitude = exponent == 0 ? std::ldexp(mantissa / 128.0, -126)
                                   : std::ldexp(1.0 + mantissa / 128.0, exponent - 127);
  return sign ? -magnitude : magnitude;
}

bool bf16_is_nan(uint16_t b) { return (b & 0x7f80u) == 0x7f80u && (b & 0x007fu) != 0; }

TEST(BFloat16, ToFloatMatchesFieldDecodingForAllBitPatterns) {
  for (uint32_t i = 0; i <= 0xffffu; ++i) {
    uint16_t b = static_cast<uint16_t>(i);
    BFloat16 value;
    value.bits = b;
    float got = value;
    int exponent = (b >> 7) & 0xff;
    if (exponent == 0xff) {
      if (b & 0x7fu) {
        EXPECT_TRUE(std::isnan(got)) << "bf16 bits 0x" << std::hex << i;
      } else {
        EXPECT_EQ(got, (b & 0x8000u) ? -std::numeric_limits<float>::infinity()
                                     : std::numeric_limits<float>::infinity());
      }
      continue;
    }
    EXPECT_EQ(static_cast<double>(got), reference_bf16_value(b)) << "bf16 bits 0x" << std::hex << i;
    EXPECT_EQ(std::signbit(got), (b & 0x8000u) != 0) << "bf16 bits 0x" << std::hex << i;
    EXPECT_EQ(BFloat16::from_float(got), b) << "round trip of bf16 bits 0x" << std::hex << i;
  }
}

// Every bf16 value with the dropped 16 bits set to each rounding-relevant pattern (exact, just
// above/below the tie, the tie itself, the top), plus a strided sweep of all floats.
std::vector<uint32_t> bf16_sweep_bits() {
  std::vector<uint32_t> out;
  for (uint32_t upper = 0; upper <= 0xffffu; ++upper) {
    for (uint32_t dropped : {0x0000u, 0x0001u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu}) {
      out.push_back(upper << 16 | dropped);
    }
  }
  for (uint64_t u = 0; u <= 0xffffffffull; u += 65521) out.push_back(static_cast<uint32_t>(u));
  return out;
}

TEST(BFloat16, FromFloatRoundsToNearestEvenLikeIntegerReference) {
  int mismatches = 0;
  for (uint32_t u : bf16_sweep_bits()) {
    uint16_t got = BFloat16::from_float(bits_float(u));
    if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN: any NaN with the same sign
      EXPECT_TRUE(bf16_is_nan(got)) << "float bits 0x" << std::hex << u << " is NaN, got bf16 0x" << got;
      EXPECT_EQ(got & 0x8000u, u >> 16 & 0x8000u) << "NaN sign, float bits 0x" << std::hex << u;
      continue;
    }
    uint16_t expected = reference_float_to_bf16(u);
    if (got != expected && ++mismatches <= 10) {
      ADD_FAILURE() << "float bits 0x" << std::hex << u << ": got bf16 0x" << got << ", expected 0x" << expected;
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST(BFloat16, SpecialValues) {
  struct Case {
    float in;
    uint16_t bits;
  };
  const Case cases[] = {
      {0.0f, 0x0000u},
      {-0.0f, 0x8000u},
      {1.0f, 0x3f80u},
      {1.0f + 0x1p-8f, 0x3f80u},                   // tie, 1.0 is even
      {1.0f + 0x1.8p-7f, 0x3f82u},                 // tie between 0x3f81 and 0x3f82: to even
      {1.0f + 0x1p-8f + 0x1p-20f, 0x3f81u},        // just above the tie
      {3.14159265f, 0x4049u},                      // pi = 0x40490fdb: rounds down
      {std::numeric_limits<float>::max(), 0x7f80u},  // rounds up into infinity
      {std::numeric_limits<float>::infinity(), 0x7f80u},
      {-std::numeric_limits<float>::infinity(), 0xff80u},
      {std::numeric_limits<float>::denorm_min(), 0x0000u},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(BFloat16::from_float(c.in), c.bits) << std::hexfloat << c.in;
  }
  // A NaN whose payload lives only in the low 16 bits must not truncate to infinity.
  for (uint32_t u : {0x7f800001u, 0xff800001u, 0x7fc00000u, 0x7f80ffffu}) {
    EXPECT_TRUE(bf16_is_nan(BFloat16::from_float(bits_float(u)))) << "float bits 0x" << std::hex << u;
  }
}

// ---- the dtype table ----

TEST(DType, SizeNameAndAliasesRoundTrip) {
  struct Row {
    DType dtype;
    size_t size;
    bool floating;
    std::string name;
    std::vector<std::string> aliases;
  };
  const Row rows[] = {
      {DType::F32, sizeof(float), true, "f32", {"float32", "fp32", "float"}},
      {DType::F64, sizeof(double), true, "f64", {"float64", "fp64", "double"}},
      {DType::BF16, sizeof(BFloat16), true, "bf16", {"bfloat16"}},
      {DType::F16, sizeof(Half), true, "f16", {"float16", "fp16", "half"}},
      {DType::I32, sizeof(int32_t), false, "i32", {"int32"}},
      {DType::I64, sizeof(int64_t), false, "i64", {"int64"}},
      {DType::Bool, sizeof(bool), false, "bool", {}},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    EXPECT_EQ(dtype_size(row.dtype), row.size);
    EXPECT_EQ(is_floating(row.dtype), row.floating);
    EXPECT_EQ(std::string(dtype_name(row.dtype)), row.name);
    EXPECT_EQ(dtype_from_name(dtype_name(row.dtype)), row.dtype);
    for (const std::string& alias : row.aliases) EXPECT_EQ(dtype_from_name(alias), row.dtype) << alias;
    std::ostringstream os;
    os << row.dtype;
    EXPECT_EQ(os.str(), row.name);
  }
  EXPECT_EQ(dtype_of<float>(), DType::F32);
  EXPECT_EQ(dtype_of<double>(), DType::F64);
  EXPECT_EQ(dtype_of<BFloat16>(), DType::BF16);
  EXPECT_EQ(dtype_of<Half>(), DType::F16);
  EXPECT_EQ(dtype_of<int32_t>(), DType::I32);
  EXPECT_EQ(dtype_of<int64_t>(), DType::I64);
  EXPECT_EQ(dtype_of<bool>(), DType::Bool);
}

TEST(DType, UnknownNameIsRejected) {
  for (const char* name : {"", "f8", "F32", "float8", "int8", "bf 16"}) {
    try {
      dtype_from_name(name);
      ADD_FAILURE() << "dtype_from_name('" << name << "') did not throw";
    } catch (const Error& e) {
      EXPECT_THAT(e.what(), HasSubstr("unknown dtype '" + std::string(name) + "'"));
    }
  }
}

TEST(DType, DispatchNamesTheOpForTheWrongKind) {
  try {
    dispatch_float(DType::I64, "my_op", [](auto) { return 0; });
    ADD_FAILURE() << "dispatch_float accepted i64";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("my_op"));
    EXPECT_THAT(e.what(), HasSubstr("i64"));
  }
  try {
    dispatch_index(DType::F32, "my_gather", [](auto) { return 0; });
    ADD_FAILURE() << "dispatch_index accepted f32";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("my_gather"));
    EXPECT_THAT(e.what(), HasSubstr("f32"));
  }
  EXPECT_EQ(dispatch_all(DType::BF16, [](auto t) { return sizeof(t); }), 2u);
}

}  // namespace
}  // namespace tessera
