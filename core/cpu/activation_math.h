// Scalar activation formulas shared by the CPU kernels (elementwise ops and GEMM epilogues).
#pragma once

#include <cmath>

namespace tessera {

inline constexpr double kSqrt2OverPi = 0.7978845608028654;  // sqrt(2 / pi)
inline constexpr double kGeluCubic = 0.044715;

// GELU, tanh approximation (GPT-2): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
template <typename A>
A gelu_tanh(A x) {
  return A(0.5) * x * (A(1) + std::tanh(A(kSqrt2OverPi) * (x + A(kGeluCubic) * x * x * x)));
}

// d gelu_tanh(x) / dx.
template <typename A>
A gelu_tanh_slope(A x) {
  A inner_slope = A(kSqrt2OverPi) * (A(1) + A(3 * kGeluCubic) * x * x);
  A t = std::tanh(A(kSqrt2OverPi) * (x + A(kGeluCubic) * x * x * x));
  return A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * inner_slope;
}

}  // namespace tessera
