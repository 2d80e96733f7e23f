// Runs backward over the graph reachable from `roots`: counts dependencies, then executes
// nodes in reverse creation order once all gradients for them have arrived (gradients that
// arrive at the same input are summed). Backward functions run with grad mode off.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace tessera {

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_roots,
                  bool retain_graph);

}  // namespace tessera
