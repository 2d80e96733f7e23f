// Megatron's tensor-parallel mappings: autograd ops whose backward is the conjugate collective
// of their forward. Each takes the tensor-parallel communicator explicitly and works on any
// backend (tensors on the communicator's device).
//   copy_to_tensor_parallel        forward identity                  backward all-reduce (sum)
//   reduce_from_tensor_parallel    forward all-reduce (sum)          backward identity
//   gather_from_tensor_parallel    forward all-gather along last dim backward keep own last-dim slice
//   scatter_to_tensor_parallel     forward keep own last-dim slice   backward all-gather along last dim
// Sequence parallelism (activations sharded along the sequence dim `dim`: 0 for Megatron's
// [T, B, C], 1 for the models' [B, T, C]):
//   gather_from_sequence_parallel  forward all-gather along dim      backward reduce-scatter (sum)
//   reduce_scatter_to_sequence_parallel  forward reduce-scatter      backward all-gather along dim
// Rank r's slice along a dim of extent n * size() is [r * n, (r + 1) * n). Shapes are checked
// before any communication; outputs are fresh contiguous tensors (copy_to shares x's storage).
#pragma once

#include "core/tensor.h"

namespace tessera {

class Communicator;  // parallel/communicator.h

Tensor copy_to_tensor_parallel(const Tensor& x, Communicator& tp);
Tensor reduce_from_tensor_parallel(const Tensor& x, Communicator& tp);
// x [..., n] -> [..., n * tp.size()].
Tensor gather_from_tensor_parallel(const Tensor& x, Communicator& tp);
// x [..., n * tp.size()] -> [..., n]; the last dim must divide by tp.size().
Tensor scatter_to_tensor_parallel(const Tensor& x, Communicator& tp);

// x [..., T, ...] (T at `dim`) -> [..., T * tp.size(), ...].
Tensor gather_from_sequence_parallel(const Tensor& x, Communicator& tp, int64_t dim = 0);
// x [..., T * tp.size(), ...] -> [..., T, ...]; `dim` must divide by tp.size().
Tensor reduce_scatter_to_sequence_parallel(const Tensor& x, Communicator& tp, int64_t dim = 0);

}  // namespace tessera
