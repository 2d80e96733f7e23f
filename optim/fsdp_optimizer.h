// FsdpOptimizer: AdamW for ZeRO-3 / FSDP (parallel/fsdp.h): every rank updates only its shard of
// each unit's flat parameters, with DistributedOptimizer's flat-piece machinery.
//
// Layout: the state is three flat f32 tensors (master weights, exp_avg, exp_avg_sq) holding this
// rank's shard of every unit, unit after unit (unit padding included and always zero). A
// parameter may straddle shard boundaries, so weight decay is applied per piece (ShardPiece: a
// flat range of one parameter inside this rank's shard; `parameter` indexes parameters(), the
// units' parameters in unit order). Masters start from the parameter shards.
//
// step(grad_scale): after fsdp.finish_grad_sync(), the backend's fused AdamW updates the master
// pieces from fsdp.grad_shard(u) (one launch per decay group), and each unit's parameter shard
// takes its master, rounded to the parameters' dtype. No collective: the next forward gathers.
//
// Memory per rank (psi parameters of dtype size d, N dp ranks; docs/distributed.md): parameters
// d psi / N, gradients 4 psi / N (2 psi / N with FsdpOptions::grad_dtype bf16), optimizer state
// 12 psi / N: (d + 16) psi / N in all, 18 psi / N for bf16 with f32 gradients and the issue's
// 16 psi / N with bf16 gradients (the fused AdamW reads either), plus unit padding and the stated
// gather and reduction buffers (communication). memory_report() measures the live tensors.
#pragma once

#include <vector>

#include "optim/adamw.h"
#include "optim/distributed_optimizer.h"
#include "optim/optimizer.h"
#include "parallel/fsdp.h"

namespace tessera {

class FsdpOptimizer final : public Optimizer {
 public:
  // `fsdp` must outlive this object.
  FsdpOptimizer(FullyShardedDataParallel& fsdp, AdamWOptions options);
  void step() override { step(1.0); }
  // Gradients are divided by grad_scale first (clipping). Local to the rank.
  void step(double grad_scale);
  // Squared L2 norm of the whole model's gradient, as DistributedOptimizer::grad_norm_squared
  // (flags aligned with parameters()). Collective over dp (and tp when given).
  double grad_norm_squared(const std::vector<bool>& tensor_parallel_sharded = {}, Communicator* tp = nullptr) const;

  int64_t steps_taken() const { return steps_; }
  void set_steps_taken(int64_t steps);
  const std::vector<ShardPiece>& pieces() const { return pieces_; }  // ShardPiece::bucket is the unit
  const Tensor& master() const { return master_; }
  const Tensor& exp_avg() const { return exp_avg_; }
  const Tensor& exp_avg_sq() const { return exp_avg_sq_; }
  // Where unit u's shard starts in the flat state: a piece's range in fsdp().parameter_shard(u)
  // starts at piece.shard_offset - unit_offset(u) (checkpoints write the parameter shards there).
  int64_t unit_offset(size_t unit) const { return unit_offset_.at(unit); }
  FullyShardedDataParallel& fsdp() const { return fsdp_; }

  // Parameters and gradients: the shards; communication: fsdp's stated gather + reduction bounds.
  ZeroMemoryReport memory_report() const;

 private:
  FullyShardedDataParallel& fsdp_;
  AdamWOptions options_;
  std::vector<ShardPiece> pieces_;
  std::vector<int64_t> unit_offset_;  // where unit u's shard starts in the flat state
  Tensor master_, exp_avg_, exp_avg_sq_;
  int64_t steps_ = 0;
};

}  // namespace tessera
