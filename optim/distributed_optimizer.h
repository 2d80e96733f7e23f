// DistributedOptimizer: Megatron's distributed optimizer (ZeRO-1, and ZeRO-2 with sharded
// gradients): AdamW whose state is sharded over the data-parallel ranks along the layout of a
// DistributedDataParallel gradient buffer.
//
// Layout: rank r of N owns the range ddp.bucket_shard(b) of every bucket b. A parameter may
// straddle shard boundaries, so the unit of ownership is a flat range of a parameter (a
// "piece"), as in Megatron: pieces() lists this rank's, bucket by bucket. The optimizer state is
// three flat f32 tensors of total_numel / N elements (the shards of every bucket, bucket after
// bucket, bucket padding included and always zero): master weights (always separate, also for
// f32 parameters, so the all-gather has one source), exp_avg and exp_avg_sq.
//
// step(grad_scale): the DDP must have been built with GradSync::ReduceScatter (stage 1) or
// GradSync::Sharded (stage 2), and finish_grad_sync() called: ddp.bucket_grad_shard(b) then
// holds the reduced gradient of the owned ranges (f32, or 16-bit with DdpOptions::grad_dtype:
// the fused AdamW and the grad norm read either). The backend's fused AdamW updates the master
// pieces (one launch per decay group), then each bucket's updated shard, rounded to the
// parameters' dtype, is all-gathered over dp and copied into the parameters, so every rank ends
// with the same full parameters.
//
// Memory (per rank, psi parameters, N dp ranks; see docs/distributed.md): parameters psi x
// dtype size (the model's own tensors), gradients ddp.grad_buffer_bytes() (4 psi for stage 1,
// 4 psi / N for stage 2; 2 psi and 2 psi / N with bf16 gradients), optimizer state 12 psi / N
// (+ bucket padding). memory_report() measures them from the live tensors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "optim/adamw.h"
#include "optim/optimizer.h"
#include "parallel/distributed_data_parallel.h"

namespace tessera {

// Flat range [param_offset, param_offset + numel) of parameter `parameter` (index into
// ddp.parameters()), held at [shard_offset, shard_offset + numel) of the flat optimizer state.
struct ShardPiece {
  size_t parameter = 0;
  size_t bucket = 0;
  int64_t param_offset = 0;
  int64_t shard_offset = 0;
  int64_t numel = 0;
};

// Bytes per rank, measured from the tensors that hold them.
struct ZeroMemoryReport {
  size_t parameters = 0;       // the model's parameters (every rank holds them all)
  size_t gradients = 0;        // persistent gradient memory (DDP buffer or shard)
  size_t optimizer_state = 0;  // master + exp_avg + exp_avg_sq shards
  size_t communication = 0;    // largest transient bucket buffer: reduce-scatter output + staging + all-gather
  size_t total() const { return parameters + gradients + optimizer_state; }
};

// The squared global gradient norm from this rank's gradient shards (ZeRO and FSDP): the sums
// of squares of `replicated` and `tensor_parallel_sharded` pieces are added over `dp`, and the
// tensor-parallel part also over `tp` (replicated parameters are counted once). Collective over
// dp (and tp when given).
double sharded_grad_norm_squared(const std::vector<Tensor>& replicated,
                                 const std::vector<Tensor>& tensor_parallel_sharded, Communicator& dp,
                                 Communicator* tp);

// One fused AdamW launch per decay group (true: weight decay on) of flat-shard pieces, with the
// optimizer's hyperparameters at step `step` (ZeRO and FSDP update their shards this way).
void adamw_step_by_decay_group(const std::map<bool, std::vector<AdamWParam>>& groups, const AdamWOptions& options,
                               double learning_rate, int64_t step, double grad_scale, Device device);

class DistributedOptimizer final : public Optimizer {
 public:
  // `ddp` (GradSync::ReduceScatter or Sharded) must outlive this object; its parameters must all
  // have one dtype. Masters start from the parameters' current values.
  DistributedOptimizer(DistributedDataParallel& ddp, AdamWOptions options);
  void step() override { step(1.0); }
  // Gradients are divided by grad_scale first (clipping). Collective over the dp group.
  void step(double grad_scale);

  // Squared L2 norm of the whole model's gradient, summed over the dp group: each rank adds the
  // squares of its shard. With tensor parallelism pass the tp group and which parameters are
  // tp-sharded (aligned with parameters()): their squares are summed over tp as well, replicated
  // ones counted once. Collective over dp (and tp when given).
  double grad_norm_squared(const std::vector<bool>& tensor_parallel_sharded = {}, Communicator* tp = nullptr) const;

  int64_t steps_taken() const { return steps_; }
  void set_steps_taken(int64_t steps);
  const std::vector<ShardPiece>& pieces() const { return pieces_; }
  // Flat f32 state (1-D, shard_numel() elements); checkpoints read and write them in place.
  const Tensor& master() const { return master_; }
  const Tensor& exp_avg() const { return exp_avg_; }
  const Tensor& exp_avg_sq() const { return exp_avg_sq_; }
  int64_t shard_numel() const { return master_.numel(); }
  const DistributedDataParallel& ddp() const { return ddp_; }

  ZeroMemoryReport memory_report() const;

 private:
  void gather_parameters();

  DistributedDataParallel& ddp_;
  AdamWOptions options_;
  std::vector<ShardPiece> pieces_;
  std::vector<int64_t> bucket_shard_offset_;  // where bucket b's shard starts in the flat state
  Tensor master_, exp_avg_, exp_avg_sq_;
  int64_t steps_ = 0;
};

}  // namespace tessera
