// Argument checks shared by op frontends. Messages name the op and show the offending
// tensors' shapes, dtypes and devices.
#pragma once

#include <string_view>

#include "core/tensor.h"

namespace tessera {

void check_defined(std::string_view op, const Tensor& t, std::string_view what);
void check_same_dtype_device(std::string_view op, const Tensor& a, const Tensor& b);
void check_floating(std::string_view op, const Tensor& t);
void check_dim(std::string_view op, const Tensor& t, int64_t ndim, std::string_view what);

}  // namespace tessera
