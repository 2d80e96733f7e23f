// Element types of Tensor. f64 exists for gradient checks; bf16/f16 are storage types whose
// CPU arithmetic runs in f32. Dtype dispatch goes through one switch (dispatch_float /
// dispatch_index below), never through per-dtype builds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>

#include "core/check.h"
#include "core/half.h"

namespace tessera {

enum class DType : uint8_t { F32, F64, BF16, F16, I32, I64, Bool };

size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);
DType dtype_from_name(std::string_view name);  // "f32", "float32", "bf16", "bfloat16", ...
bool is_floating(DType dtype);
std::ostream& operator<<(std::ostream& os, DType dtype);

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<BFloat16>() { return DType::BF16; }
template <> constexpr DType dtype_of<Half>() { return DType::F16; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::I64; }
template <> constexpr DType dtype_of<bool>() { return DType::Bool; }

// Arithmetic type for a storage type: f64 computes in f64, every other float type in f32.
template <typename T>
using acc_type = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Calls fn(T{}) with T the C++ type of a floating dtype; `op` names the caller in errors.
template <typename Fn>
decltype(auto) dispatch_float(DType dtype, std::string_view op, Fn&& fn) {
  switch (dtype) {
    case DType::F32: return fn(float{});
    case DType::F64: return fn(double{});
    case DType::BF16: return fn(BFloat16{});
    case DType::F16: return fn(Half{});
    default: break;
  }
  TS_CHECK(false, op, ": expected a floating dtype (f32, f64, bf16, f16), got ", dtype_name(dtype));
  return fn(float{});  // unreachable
}

// Calls fn(T{}) with T the C++ type of an index dtype (token ids, targets).
template <typename Fn>
decltype(auto) dispatch_index(DType dtype, std::string_view op, Fn&& fn) {
  switch (dtype) {
    case DType::I32: return fn(int32_t{});
    case DType::I64: return fn(int64_t{});
    default: break;
  }
  TS_CHECK(false, op, ": expected an index dtype (i32, i64), got ", dtype_name(dtype));
  return fn(int64_t{});  // unreachable
}

// Calls fn(T{}) for any dtype.
template <typename Fn>
decltype(auto) dispatch_all(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::F32: return fn(float{});
    case DType::F64: return fn(double{});
    case DType::BF16: return fn(BFloat16{});
    case DType::F16: return fn(Half{});
    case DType::I32: return fn(int32_t{});
    case DType::I64: return fn(int64_t{});
    case DType::Bool: return fn(bool{});
  }
  TS_CHECK(false, "unknown dtype");
  return fn(float{});  // unreachable
}

}  // namespace tessera
