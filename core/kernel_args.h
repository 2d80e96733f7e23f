// Argument checks that every backend's kernels share (device checks stay with each backend),
// so CPU and CUDA reject the same bad input with the same message.
#pragma once

#include <string_view>

#include "core/backend.h"

namespace tessera {

// Step >= 1, betas in [0, 1), non-negative lr/eps/weight decay, finite positive grad_scale.
void check_adamw_hyper(const AdamWHyper& hyper);

// weight [V, C]; `rows` (out or dL_dout) holds one C-row per id, in weight's dtype; all three
// contiguous. `op` and `rows_name` name the kernel and the rows argument in messages.
void check_embedding_shapes(std::string_view op, const Tensor& weight, const Tensor& ids, const Tensor& rows,
                            std::string_view rows_name);

}  // namespace tessera
