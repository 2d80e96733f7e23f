// Ops that join or cut tensors along a dim.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace tessera {

Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
// Views of consecutive pieces of `sizes` along dim (sizes must sum to the dim's extent).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
// `chunks` equal pieces along dim.
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);

}  // namespace tessera
