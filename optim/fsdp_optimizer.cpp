// Sharded AdamW over FSDP's unit shards (see fsdp_optimizer.h).
#include "optim/fsdp_optimizer.h"

#include <algorithm>
#include <map>

#include "core/autograd/grad_mode.h"
#include "core/backend.h"

namespace tessera {

namespace {
std::vector<Tensor> all_parameters(const FullyShardedDataParallel& fsdp) {
  std::vector<Tensor> out;
  for (size_t u = 0; u < fsdp.num_units(); ++u)
    for (const Tensor& p : fsdp.unit_parameters(u)) out.push_back(p);
  return out;
}
}  // namespace

FsdpOptimizer::FsdpOptimizer(FullyShardedDataParallel& fsdp, AdamWOptions options)
    : Optimizer(all_parameters(fsdp)), fsdp_(fsdp), options_(options) {
  AdamW(std::vector<Tensor>{}, options);  // the same hyperparameter checks as AdamW
  learning_rate_ = options.lr;
  int64_t at = 0;
  size_t index = 0;
  for (size_t u = 0; u < fsdp.num_units(); ++u) {
    const FsdpUnitLayout& layout = fsdp.unit_layout(u);
    unit_offset_.push_back(at);
    for (size_t i = 0; i < fsdp.unit_parameters(u).size(); ++i, ++index) {
      const int64_t offset = layout.offsets[i], numel = fsdp.unit_parameters(u)[i].numel();
      const int64_t begin = std::max(offset, layout.shard_offset);
      const int64_t end = std::min(offset + numel, layout.shard_offset + layout.shard_numel);
      if (begin < end) pieces_.push_back({index, u, begin - offset, at + begin - layout.shard_offset, end - begin});
    }
    at += layout.shard_numel;
  }
  NoGradGuard no_grad;
  const Device device = fsdp.communicator().device();
  master_ = Tensor::zeros({at}, DType::F32, device);
  exp_avg_ = Tensor::zeros({at}, DType::F32, device);
  exp_avg_sq_ = Tensor::zeros({at}, DType::F32, device);
  for (size_t u = 0; u < fsdp.num_units(); ++u)
    master_.narrow(0, unit_offset_[u], fsdp.unit_layout(u).shard_numel).copy_(fsdp.parameter_shard(u));
}

void FsdpOptimizer::set_steps_taken(int64_t steps) {
  TS_CHECK(steps >= 0, "FsdpOptimizer::set_steps_taken: ", steps, " must be >= 0");
  steps_ = steps;
}

void FsdpOptimizer::step(double grad_scale) {
  TS_CHECK(grad_scale > 0.0, "FsdpOptimizer::step: grad_scale ", grad_scale, " must be positive");
  ++steps_;
  NoGradGuard no_grad;
  std::map<bool, std::vector<AdamWParam>> groups;  // by decay
  for (const ShardPiece& piece : pieces_) {
    const Tensor& p = parameters_[piece.parameter];
    const int64_t in_unit = piece.shard_offset - unit_offset_[piece.bucket];
    groups[options_.decay_1d_parameters || p.dim() > 1].push_back(
        {master_.narrow(0, piece.shard_offset, piece.numel), fsdp_.grad_shard(piece.bucket).narrow(0, in_unit, piece.numel),
         exp_avg_.narrow(0, piece.shard_offset, piece.numel), exp_avg_sq_.narrow(0, piece.shard_offset, piece.numel),
         Tensor()});
  }
  adamw_step_by_decay_group(groups, options_, learning_rate_, steps_, grad_scale, master_.device());
  for (size_t u = 0; u < fsdp_.num_units(); ++u) {
    Tensor shard = fsdp_.parameter_shard(u);
    shard.copy_(master_.narrow(0, unit_offset_[u], shard.numel()));
  }
}

double FsdpOptimizer::grad_norm_squared(const std::vector<bool>& tensor_parallel_sharded, Communicator* tp) const {
  TS_CHECK(tp == nullptr || tensor_parallel_sharded.size() == parameters_.size(),
           "FsdpOptimizer::grad_norm_squared: ", tensor_parallel_sharded.size(), " sharding flags for ",
           parameters_.size(), " parameters");
  std::vector<Tensor> replicated, sharded;
  for (const ShardPiece& piece : pieces_) {
    Tensor grad = fsdp_.grad_shard(piece.bucket).narrow(0, piece.shard_offset - unit_offset_[piece.bucket], piece.numel);
    (tp && tensor_parallel_sharded[piece.parameter] ? sharded : replicated).push_back(grad);
  }
  return sharded_grad_norm_squared(replicated, sharded, fsdp_.communicator(), tp);
}

ZeroMemoryReport FsdpOptimizer::memory_report() const {
  ZeroMemoryReport report;
  for (size_t u = 0; u < fsdp_.num_units(); ++u) {
    const Tensor shard = fsdp_.parameter_shard(u);
    report.parameters += size_t(shard.numel()) * dtype_size(shard.dtype());
    report.gradients += size_t(fsdp_.grad_shard(u).numel()) * dtype_size(fsdp_.grad_shard(u).dtype());
  }
  report.optimizer_state = 3 * size_t(master_.numel()) * sizeof(float);
  report.communication = fsdp_.gather_buffer_bound_bytes() + fsdp_.reduce_buffer_bound_bytes();
  return report;
}

}  // namespace tessera
