// Helpers shared by the CPU kernels: element access to a strided tensor view in row-major order
// of its shape, conversion between element types, and the precondition checks every kernel
// repeats. Offsets are in elements and relative to data_ptr(), which already includes the
// view's storage offset; a stride of 0 is a broadcast dimension.
#pragma once

#include <cstdint>
#include <string_view>
#include <type_traits>

#include "core/tensor.h"

namespace tessera {

// Offset of element `index` (row-major over `shape`) from the view's first element.
inline int64_t strided_offset(const Shape& shape, const Shape& strides, int64_t index) {
  int64_t offset = 0;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    offset += (index % shape[d]) * strides[d];
    index /= shape[d];
  }
  return offset;
}

// Element `i` (row-major) of a view whose C++ element type is T; contiguous views skip the
// index arithmetic.
template <typename T>
class StridedView {
 public:
  explicit StridedView(const Tensor& tensor)
      : data_(tensor.data<T>()),
        shape_(tensor.shape()),
        strides_(tensor.strides()),
        contiguous_(tensor.is_contiguous()) {}

  T& operator[](int64_t i) const { return data_[contiguous_ ? i : strided_offset(shape_, strides_, i)]; }

 private:
  T* data_;
  Shape shape_;
  Shape strides_;
  bool contiguous_;
};

template <typename T>
constexpr bool is_16bit_float_v = std::is_same_v<T, BFloat16> || std::is_same_v<T, Half>;

// Converts a value between element types (float -> int truncates, nonzero -> true); bf16/f16
// go through f32.
template <typename To, typename From>
To convert(From value) {
  if constexpr (std::is_same_v<To, From>) {
    return value;
  } else if constexpr (is_16bit_float_v<From>) {
    return convert<To>(static_cast<float>(value));
  } else if constexpr (is_16bit_float_v<To>) {
    return To(static_cast<float>(value));
  } else {
    return static_cast<To>(value);
  }
}

inline void check_contiguous(std::string_view op, std::string_view name, const Tensor& t) {
  TS_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous, got shape ", shape_str(t.shape()),
           " strides ", shape_str(t.strides()));
}

// Checks that `t` is a contiguous CPU tensor of the given dtype and shape.
inline void check_arg(std::string_view kernel, std::string_view name, const Tensor& t, DType dtype,
               const Shape& shape) {
  TS_CHECK(t.defined(), kernel, ": ", name, " is undefined");
  TS_CHECK(t.device().is_cpu(), kernel, ": ", name, " is on ", t.device(), ", expected cpu");
  TS_CHECK(t.dtype() == dtype && t.shape() == shape, kernel, ": expected ", name, " ",
           dtype_name(dtype), " ", shape_str(shape), ", got ", dtype_name(t.dtype()), " ",
           shape_str(t.shape()));
  TS_CHECK(t.is_contiguous(), kernel, ": ", name, " ", shape_str(t.shape()),
           " must be contiguous, strides ", shape_str(t.strides()));
}

// `t` must have the shape and dtype of `ref`.
inline void check_like(std::string_view op, std::string_view name, const Tensor& t,
                       std::string_view ref_name, const Tensor& ref) {
  TS_CHECK(t.shape() == ref.shape() && t.dtype() == ref.dtype(), op, ": ", name, " ", shape_str(t.shape()),
           " ", t.dtype(), " must match ", ref_name, " ", shape_str(ref.shape()), " ", ref.dtype());
}

}  // namespace tessera
