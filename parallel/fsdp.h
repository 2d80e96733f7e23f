// FullyShardedDataParallel: ZeRO-3 / FSDP over a data-parallel group, for units of parameters
// (parallel knows nothing of models: GptModel::fsdp_units() makes the units, one per transformer
// layer plus the embedding and the head, and calls the hooks below).
//
// Layout: a unit's parameters (one dtype, contiguous) become views of one flat buffer of the
// unit's numel padded to a multiple of N (Tensor::set_storage), so an all-gather writes them in
// place. Rank r of N persistently holds only elements [r S, (r + 1) S) (S = padded / N) of it:
// parameter_shard(u) in the parameters' dtype and grad_shard(u) in FsdpOptions::grad_dtype (f32,
// or the parameters' 16-bit dtype as Megatron's --grad-reduce-in-bf16). The flat buffer's memory
// exists only while the unit is gathered (Storage::release/refill): the parameter tensors, and
// every tensor the autograd graph saved from them, stay the same objects throughout.
//
// Forward: pre_forward(units) gathers them (waiting on a prefetch in flight) and starts the
// async all-gather of the next `prefetch` units; post_forward(units, outputs) frees them and,
// when recording, passes the unit's outputs through an identity op whose backward runs before
// the unit's own backward (the engine runs later nodes first): it gathers the units again,
// prefetches the `prefetch` units before units.front(), and installs staging views as the
// parameters' gradients, so autograd accumulates into the staging buffer in place. When the
// last of a unit's parameter gradients is ready (grad-ready hook), the unit's full parameters are
// freed, its staging buffer is reduce-scattered (async; at most two in flight, then the oldest
// is waited for) and the parameters' gradients dropped; the result is added into grad_shard(u)
// when it lands. units.front() is the unit whose neighbours are prefetched; further units are
// used out of order (a tied embedding table in the head) and stay gathered from their first
// backward use until their own gradients are ready.
//
// Every backward must be followed by finish_grad_sync() (as ZeRO-2: micro-batches accumulate
// into the shards, one reduce-scatter each): it reduces units whose gradients are incomplete
// (parameters unused this pass), waits for everything in flight and frees every gathered unit.
// Collectives are issued in the same order on every rank because the forward and the autograd
// order are the same on every rank. Reduction: Sum or Avg, as DdpOptions.
//
// Memory per rank (psi parameters of dtype size d in the units, gradient dtype size g = 4 or 2):
// parameter shards d psi / N, gradient shards g psi / N (+ padding). Transient, measured by
// stats(): gathered units at most (2 + prefetch) of the largest unit (current, prefetched, one
// used out of order) in its dtype, reduction buffers at most 4 x (numel + S) x g bytes of the
// largest unit (the unit accumulating, one used out of order, two reduce-scatters in flight).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "parallel/communicator.h"

namespace tessera {

struct FsdpOptions {
  int prefetch = 1;                    // units all-gathered ahead of use, forward and backward (>= 0)
  ReduceOp reduction = ReduceOp::Sum;  // Sum or Avg
  // Dtype of the staging buffers, reductions and gradient shards: f32, or the units' dtype when
  // every unit has the same 16-bit dtype (bf16 or f16).
  DType grad_dtype = DType::F32;
};

// Where a unit's parameters sit in its flat buffer, and this rank's shard of it.
struct FsdpUnitLayout {
  std::vector<int64_t> offsets;  // aligned with the unit's parameters
  int64_t numel = 0;             // padded to a multiple of the group size
  int64_t shard_offset = 0;      // rank * shard_numel
  int64_t shard_numel = 0;       // numel / N
};

struct FsdpStats {
  int64_t all_gathers = 0;        // since construction
  int64_t reduce_scatters = 0;    // since construction
  size_t gathered_bytes = 0;      // full parameters held now
  size_t peak_gathered_bytes = 0;
  size_t reduce_bytes = 0;        // staging + reduce-scatter outputs held now
  size_t peak_reduce_bytes = 0;
};

class FullyShardedDataParallel {
 public:
  // Every parameter must be a distinct contiguous leaf that requires grad, on dp.device(), of one
  // dtype per unit. Each rank must pass the same full values (built from the same seed); they are
  // moved into the flat buffers, sharded and freed. `dp` must outlive this object.
  FullyShardedDataParallel(std::vector<std::vector<Tensor>> units, Communicator& dp, FsdpOptions options = {});
  ~FullyShardedDataParallel();  // waits for collectives still in flight
  FullyShardedDataParallel(const FullyShardedDataParallel&) = delete;
  FullyShardedDataParallel& operator=(const FullyShardedDataParallel&) = delete;

  // Forward hooks, called around each unit's forward (see above); collective over dp.
  void pre_forward(const std::vector<size_t>& units);
  std::vector<Tensor> post_forward(const std::vector<size_t>& units, std::vector<Tensor> outputs);
  // After every backward: reduces what is left, waits, frees gathered units. Collective.
  void finish_grad_sync();
  void zero_grad();  // zeros the gradient shards
  // Full parameters outside training (checkpoints, export, tests): gather every unit, read the
  // parameters, then free them. Collective.
  void gather_full_parameters();
  void release_full_parameters();

  size_t num_units() const;
  const std::vector<Tensor>& unit_parameters(size_t unit) const;
  const FsdpUnitLayout& unit_layout(size_t unit) const;
  Tensor parameter_shard(size_t unit) const;  // 1-D, the parameters' dtype; the optimizer writes it
  Tensor grad_shard(size_t unit) const;       // 1-D grad_dtype; valid after finish_grad_sync
  Communicator& communicator() const;
  const FsdpOptions& options() const;
  FsdpStats stats() const;
  // The stated bounds of the transient buffers (header comment), for the memory report.
  size_t gather_buffer_bound_bytes() const;
  size_t reduce_buffer_bound_bytes() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace tessera
