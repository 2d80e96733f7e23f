// Megatron's tensor-parallel linear layers over a tensor-parallel communicator `tp` (passed
// explicitly; it must outlive the layer and every graph built with it). A null `tp` makes the
// single-rank layer, which computes exactly what Linear computes (same weights, same kernels),
// so a model can be written once for both cases.
//   ColumnParallelLinear: weight [out / tp, in] (rank r holds output rows [r * out/tp, ...)),
//     bias [out / tp]. forward: copy_to_tensor_parallel(x) -> x W_r^T + b_r, giving [..., out/tp];
//     with gather_output the shards are all-gathered into [..., out].
//     output_blocks > 1: the output rows are that many equal blocks split separately (SwiGLU's
//     fused [gate; up]): rank r holds the r-th slice of every block, in block order, so its
//     output is [gate_r, up_r] (Megatron-core's layout).
//   RowParallelLinear: weight [out, in / tp] (rank r holds input columns [r * in/tp, ...)),
//     bias [out], replicated. forward: input [..., in/tp] (input_is_parallel) or [..., in]
//     scattered along the last dim; y_r = x_r W_r^T; reduce_from_tensor_parallel sums the
//     partial products; the bias is added once, after the all-reduce.
// Sequence parallelism (activations sharded along the sequence dim `sequence_dim`: 0 for
// Megatron's [T, B, C], 1 for [B, T, C]): the column layer takes a T / tp shard and all-gathers
// it along T instead of copy_to; the row layer reduce-scatters along T instead of all-reducing
// and returns the T / tp shard. Its bias then sees only this rank's tokens, so its gradient is
// partial: the caller sums it across tp (as for norm weights).
// Initialisation: every rank draws the full [out, in] weight exactly as Linear(in, out) would
// from the same generator state, and keeps its slice, so a tp run starts from the same
// parameters as the single-rank run. Biases start at zero. Sizes that do not divide by
// tp.size() and contradictory options are rejected in the constructor, before any communication.
// LoRA (parallel/lora.h): attach_lora() registers an adapter under "adapter." whose term joins
// the output (column: before any gather; row: after the reduction, with the bias); the layer's
// own parameters are untouched (the caller freezes them).
#pragma once

#include <memory>

#include "core/nn/layers.h"
#include "core/ops/linalg.h"
#include "core/random.h"
#include "parallel/lora.h"

namespace tessera {

class Communicator;  // parallel/communicator.h

struct ColumnParallelOptions {
  bool bias = true;
  bool gather_output = false;      // all-gather the output shards (not with sequence_parallel)
  bool sequence_parallel = false;  // input sharded along sequence_dim, all-gathered in forward
  int64_t sequence_dim = 0;
  int64_t output_blocks = 1;  // output rows split per block (see above)
  double init_std = 0.02;
  ParamOptions param = {};
};

struct RowParallelOptions {
  bool bias = true;
  bool input_is_parallel = true;   // input already split along the last dim (a column layer's output)
  bool sequence_parallel = false;  // output reduce-scattered along sequence_dim (needs input_is_parallel)
  int64_t sequence_dim = 0;
  double init_std = 0.02;
  ParamOptions param = {};
};

class ColumnParallelLinear : public Module {
 public:
  ColumnParallelLinear(int64_t in_features, int64_t out_features, Communicator* tp, Generator& generator,
                       ColumnParallelOptions options = {});
  Tensor forward(const Tensor& x) const;
  // forward(x) and its GELU from one GEMM (core/ops linear_and_gelu), for a RowParallelLinear's
  // forward_of_gelu. The activation is left undefined (the row layer then computes it) where
  // the GEMM's output is not forward's: with gather_output or an active adapter.
  LinearAndGelu forward_and_gelu(const Tensor& x) const;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }
  // Adds a LoRA adapter (once); its A is drawn from `init`, dropout from `dropout_generator`.
  LoraAdapter& attach_lora(Generator& init, Generator* dropout_generator, LoraAdapterOptions options);
  LoraAdapter* lora() const { return lora_.get(); }  // null without an adapter

 private:
  // x as the local GEMM reads it: replicated into the tp region, or the whole sequence gathered.
  Tensor full_input(const Tensor& x) const;
  Communicator* tp_;
  ColumnParallelOptions options_;
  std::shared_ptr<LoraAdapter> lora_;
  Tensor weight_;
  Tensor bias_;
};

class RowParallelLinear : public Module {
 public:
  RowParallelLinear(int64_t in_features, int64_t out_features, Communicator* tp, Generator& generator,
                    RowParallelOptions options = {});
  Tensor forward(const Tensor& x) const;
  // forward(gelu(x)), keeping x rather than gelu(x) for the backward (core/ops linear_of_gelu).
  // gelu_of_x: gelu(x) if the caller has it (ColumnParallelLinear::forward_and_gelu).
  Tensor forward_of_gelu(const Tensor& x, const Tensor& gelu_of_x = {}) const;
  // forward(swiglu(gate, up)) of a packed x [..., 2 in] (gate, then up: a SwiGLU fc1's output),
  // keeping x for the backward (core/ops linear_of_swiglu). Needs input_is_parallel.
  Tensor forward_of_swiglu(const Tensor& x) const;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }
  // As ColumnParallelLinear::attach_lora. With forward_of_gelu the adapter sees gelu(x).
  LoraAdapter& attach_lora(Generator& init, Generator* dropout_generator, LoraAdapterOptions options);
  LoraAdapter* lora() const { return lora_.get(); }

 private:
  enum class InputActivation { None, Gelu, Swiglu };  // applied to x before the product
  Tensor forward_with(const Tensor& x, InputActivation activation, const Tensor& gelu_of_x = {}) const;
  Communicator* tp_;
  RowParallelOptions options_;
  std::shared_ptr<LoraAdapter> lora_;
  Tensor weight_;
  Tensor bias_;
};

}  // namespace tessera
