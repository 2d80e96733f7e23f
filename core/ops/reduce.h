// Reductions over dims. An empty dim list reduces over all dims.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace tessera {

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Largest value along `dim`; no gradient (use it for statistics and masks).
Tensor amax(const Tensor& x, int64_t dim, bool keepdim = false);
// Index (i64) of the largest value along `dim`, first one on ties.
Tensor argmax(const Tensor& x, int64_t dim = -1, bool keepdim = false);

}  // namespace tessera
