// Sharded AdamW over a DDP buffer's layout (see distributed_optimizer.h).
#include "optim/distributed_optimizer.h"

#include <algorithm>
#include <map>

#include "core/autograd/grad_mode.h"
#include "core/backend.h"

namespace tessera {

DistributedOptimizer::DistributedOptimizer(DistributedDataParallel& ddp, AdamWOptions options)
    : Optimizer(ddp.parameters()), ddp_(ddp), options_(options) {
  TS_CHECK(ddp.options().grad_sync != GradSync::AllReduce,
           "DistributedOptimizer: the DistributedDataParallel all-reduces its gradients; build it with "
           "grad_sync = GradSync::ReduceScatter (ZeRO-1) or GradSync::Sharded (ZeRO-2)");
  // The same hyperparameter checks as AdamW (and one source for them).
  AdamW(std::vector<Tensor>{}, options);
  learning_rate_ = options.lr;
  const DType dtype = parameters_.front().dtype();
  for (const Tensor& p : parameters_) {
    TS_CHECK(p.dtype() == dtype && p.is_contiguous(), "DistributedOptimizer: parameters must be contiguous and of ",
             "one dtype (", dtype_name(dtype), "), got ", p);
  }
  const Communicator& dp = ddp.communicator();
  int64_t at = 0;
  for (size_t b = 0; b < ddp.buckets().size(); ++b) {
    GradRange shard = ddp.bucket_shard(b);
    bucket_shard_offset_.push_back(at);
    for (size_t i : ddp.buckets()[b].parameters) {
      const GradRange& range = ddp.grad_ranges()[i];
      int64_t begin = std::max(range.offset, shard.offset);
      int64_t end = std::min(range.offset + range.numel, shard.offset + shard.numel);
      if (begin < end) pieces_.push_back({i, b, begin - range.offset, at + begin - shard.offset, end - begin});
    }
    at += shard.numel;
  }
  NoGradGuard no_grad;
  master_ = Tensor::zeros({at}, DType::F32, dp.device());
  exp_avg_ = Tensor::zeros({at}, DType::F32, dp.device());
  exp_avg_sq_ = Tensor::zeros({at}, DType::F32, dp.device());
  for (const ShardPiece& piece : pieces_) {
    const Tensor& p = parameters_[piece.parameter];
    master_.narrow(0, piece.shard_offset, piece.numel)
        .copy_(p.view({p.numel()}).narrow(0, piece.param_offset, piece.numel));
  }
}

void DistributedOptimizer::set_steps_taken(int64_t steps) {
  TS_CHECK(steps >= 0, "DistributedOptimizer::set_steps_taken: ", steps, " must be >= 0");
  steps_ = steps;
}

void DistributedOptimizer::step(double grad_scale) {
  TS_CHECK(grad_scale > 0.0, "DistributedOptimizer::step: grad_scale ", grad_scale, " must be positive");
  ++steps_;
  NoGradGuard no_grad;
  std::map<bool, std::vector<AdamWParam>> groups;  // by decay
  std::vector<Tensor> grad_shards;
  for (size_t b = 0; b < ddp_.buckets().size(); ++b) grad_shards.push_back(ddp_.bucket_grad_shard(b));
  for (const ShardPiece& piece : pieces_) {
    const Tensor& p = parameters_[piece.parameter];
    const int64_t in_bucket = piece.shard_offset - bucket_shard_offset_[piece.bucket];
    groups[options_.decay_1d_parameters || p.dim() > 1].push_back(
        {master_.narrow(0, piece.shard_offset, piece.numel),
         grad_shards[piece.bucket].narrow(0, in_bucket, piece.numel),
         exp_avg_.narrow(0, piece.shard_offset, piece.numel), exp_avg_sq_.narrow(0, piece.shard_offset, piece.numel),
         Tensor()});
  }
  adamw_step_by_decay_group(groups, options_, learning_rate_, steps_, grad_scale, master_.device());
  gather_parameters();
}

// Each bucket's updated shard, in the parameters' dtype, is all-gathered and scattered into the
// parameters. Bucket padding gathers the master's zeros and is not copied anywhere.
void DistributedOptimizer::gather_parameters() {
  Communicator& dp = ddp_.communicator();
  const DType dtype = parameters_.front().dtype();
  for (size_t b = 0; b < ddp_.buckets().size(); ++b) {
    const GradBucket& bucket = ddp_.buckets()[b];
    Tensor send = master_.narrow(0, bucket_shard_offset_[b], bucket.numel / dp.size()).to(dtype).contiguous();
    Tensor gathered = Tensor::empty({bucket.numel}, dtype, dp.device());
    dp.all_gather(send, gathered);
    for (size_t i : bucket.parameters) {
      const GradRange& range = ddp_.grad_ranges()[i];
      const Tensor& p = parameters_[i];
      p.view({p.numel()}).copy_(gathered.narrow(0, range.offset - bucket.offset, range.numel));
    }
  }
}

void adamw_step_by_decay_group(const std::map<bool, std::vector<AdamWParam>>& groups, const AdamWOptions& options,
                               double learning_rate, int64_t step, double grad_scale, Device device) {
  for (const auto& [decay, params] : groups) {
    AdamWHyper hyper;
    hyper.lr = learning_rate;
    hyper.beta1 = options.beta1;
    hyper.beta2 = options.beta2;
    hyper.eps = options.eps;
    hyper.weight_decay = decay ? options.weight_decay : 0.0;
    hyper.step = step;
    hyper.grad_scale = grad_scale;
    backend_for(device).adamw(params, hyper);
  }
}

double sharded_grad_norm_squared(const std::vector<Tensor>& replicated,
                                 const std::vector<Tensor>& tensor_parallel_sharded, Communicator& dp,
                                 Communicator* tp) {
  auto sum_squares = [&](const std::vector<Tensor>& grads) {
    Tensor out = Tensor::zeros({1}, DType::F32, dp.device());
    if (!grads.empty()) backend_for(dp.device()).sum_squares(grads, out);
    return double(out.item());
  };
  Tensor sums = Tensor::from_vector(
                    std::vector<double>{sum_squares(replicated), sum_squares(tensor_parallel_sharded)}, {2})
                    .to(dp.device());
  dp.all_reduce(sums, ReduceOp::Sum);
  std::vector<double> s = sums.to_vector<double>();
  if (tp) {
    Tensor over_tp = Tensor::from_vector(std::vector<double>{s[1]}, {1}).to(tp->device());
    tp->all_reduce(over_tp, ReduceOp::Sum);
    s[1] = over_tp.item();
  }
  return s[0] + s[1];
}

double DistributedOptimizer::grad_norm_squared(const std::vector<bool>& tensor_parallel_sharded,
                                               Communicator* tp) const {
  TS_CHECK(tp == nullptr || tensor_parallel_sharded.size() == parameters_.size(),
           "DistributedOptimizer::grad_norm_squared: ", tensor_parallel_sharded.size(), " sharding flags for ",
           parameters_.size(), " parameters");
  std::vector<Tensor> replicated, sharded;
  for (const ShardPiece& piece : pieces_) {
    const int64_t in_bucket = piece.shard_offset - bucket_shard_offset_[piece.bucket];
    Tensor grad = ddp_.bucket_grad_shard(piece.bucket).narrow(0, in_bucket, piece.numel);
    (tp && tensor_parallel_sharded[piece.parameter] ? sharded : replicated).push_back(grad);
  }
  return sharded_grad_norm_squared(replicated, sharded, ddp_.communicator(), tp);
}

ZeroMemoryReport DistributedOptimizer::memory_report() const {
  ZeroMemoryReport report;
  for (const Tensor& p : parameters_) report.parameters += size_t(p.numel()) * dtype_size(p.dtype());
  report.gradients = ddp_.grad_buffer_bytes();
  report.optimizer_state = 3 * size_t(master_.numel()) * sizeof(float);
  const int64_t n = ddp_.communicator().size();
  const size_t dsize = dtype_size(parameters_.front().dtype());
  const size_t gsize = dtype_size(ddp_.options().grad_dtype);
  for (const GradBucket& bucket : ddp_.buckets()) {
    size_t bytes = size_t(bucket.numel / n) * (gsize + dsize) + size_t(bucket.numel) * dsize;
    if (ddp_.options().grad_sync == GradSync::Sharded) bytes += size_t(bucket.numel) * gsize;
    report.communication = std::max(report.communication, bytes);
  }
  return report;
}

}  // namespace tessera
