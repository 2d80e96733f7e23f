// Runs backward over the graph reachable from `roots`: counts dependencies, then executes
// nodes in reverse creation order once all gradients for them have arrived (gradients that
// arrive at the same input are summed). Backward functions run with grad mode off.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace tessera {

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_roots,
                  bool retain_graph);

// True while this thread runs a backward pass with retain_graph: backward functions must then
// leave their saved tensors intact (another pass reads them). Without it a backward function
// may write its result over a saved tensor nobody else holds (cross-entropy over the logits).
bool backward_keeps_saved_tensors();

}  // namespace tessera
