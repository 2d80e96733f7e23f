// DistributedDataParallel: Megatron-core's DDP gradient reduction over a data-parallel group,
// for any list of parameters (parallel knows nothing of models).
//
// Memory: one contiguous gradient buffer on the communicator's device holds every parameter's
// gradient (Megatron's main_grad). Its dtype is DdpOptions::grad_dtype: f32 by default whatever
// the parameter dtype, so 16-bit parameters accumulate and reduce in f32; or the parameters' own
// 16-bit dtype (Megatron's --grad-reduce-in-bf16), which halves gradient memory (and NCCL's
// traffic) at the cost of accumulating micro-batches and storing the ranks' sum in 16 bits (the
// MPI communicator widens a reduction to f32 internally; what is stored is 16-bit). Each parameter's
// .grad is set to a view into it, so the autograd engine accumulates straight into the buffer
// (AccumulateGrad adds in place into an installed gradient, converting the incoming gradient).
//
// Buckets: parameters are placed in reverse order of the list (backward produces gradients
// roughly in reverse order of the forward), consecutively; a bucket closes once it holds at
// least bucket_size_mb of gradients. Each bucket is one contiguous range of the buffer, padded
// with zeros to a multiple of the group size so that ZeRO can reduce-scatter it in equal
// shards; buckets(), grad_ranges() and grad_buffer() expose the layout for that reuse.
//
// Overlap: a grad-ready hook on each parameter counts its bucket's ready parameters; when grad
// sync is on and a bucket's last parameter is ready, the bucket's all-reduce is started
// (all_reduce_async) while backward goes on computing. Buckets start strictly in bucket order,
// so every rank issues the same sequence of collectives even if readiness order differed. Each
// hook also polls the reductions in flight (WorkHandle::is_completed), which drives MPI's
// progress engine: Open MPI advances a non-blocking collective only inside MPI calls, so without
// the polls the reduction would make little progress before finish_grad_sync waits on it.
// finish_grad_sync() starts any bucket not yet started (parameters that got no gradient this
// pass) and waits for all of them; afterwards the buffer holds the reduced gradients.
//
// Gradient accumulation: turn grad sync off (no_sync() or set_grad_sync(false)) for every
// micro-batch but the last; their backward passes only accumulate locally and launch nothing.
// A parameter whose gradient becomes ready twice in one synchronised pass (a second backward
// with sync on before finish_grad_sync) is an error: its bucket may already be on the wire.
//
// Reduction: Sum (for losses already divided by the global batch's token count, as the trainer
// does) or Avg (divide by the group size, for per-rank mean losses).
//
// Sharding (ZeRO, see optim/distributed_optimizer.h): rank r of N owns elements
// [offset + r * numel / N, offset + (r + 1) * numel / N) of every bucket (bucket_shard()).
// - GradSync::AllReduce (stage 0): as above, every rank ends with the whole reduced buffer.
// - GradSync::ReduceScatter (stage 1): the full buffer is kept and accumulates locally as
//   in stage 0, but each bucket is reduce-scattered; after finish_grad_sync only this rank's
//   shard of each bucket holds the reduced gradient (the rest holds this rank's local sums).
//   Each reduce-scatter writes into a transient bucket_numel / N buffer that is copied into
//   place when it completes.
// - GradSync::Sharded (stage 2, DeepSpeed's layout): no full buffer. Parameters hold no
//   gradient between backward passes; autograd allocates one (in the parameter's dtype), and the
//   grad-ready hook copies it into its bucket's transient staging buffer (grad_dtype, allocated
//   when the bucket's first gradient arrives) and drops it. A full bucket is reduce-scattered;
//   when that completes, the result is added into the persistent shard buffer (total_numel / N) and
//   the staging buffer is released. Every backward reduces (gradient accumulation sums into the
//   shard, one reduce-scatter per micro-batch), so grad sync cannot be turned off: call
//   finish_grad_sync() after every backward.
// bucket_grad_shard(b) is this rank's reduced shard of bucket b in every mode.
//
// One DistributedDataParallel per parameter set at a time. Hooks cannot be removed, so they hold
// only a weak reference: after the object is destroyed they do nothing (the parameters keep
// their gradient views, and the buffer lives on through them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "parallel/communicator.h"

namespace tessera {

enum class GradSync { AllReduce, ReduceScatter, Sharded };  // ZeRO stage 0, 1, 2 (see above)

struct DdpOptions {
  // Target bucket size in MiB of f32 gradients (> 0); counted in f32 whatever grad_dtype, so the
  // bucket layout (and a ZeRO checkpoint's shards) does not depend on the gradient dtype.
  double bucket_size_mb = 40.0;
  ReduceOp reduction = ReduceOp::Sum;  // Sum or Avg
  GradSync grad_sync = GradSync::AllReduce;
  // Dtype of the gradient buffer, shards and reductions: f32, or the parameters' dtype when every
  // parameter has the same 16-bit dtype (bf16 or f16).
  DType grad_dtype = DType::F32;
};

// One bucket: a contiguous range of the gradient buffer.
struct GradBucket {
  int64_t offset = 0;  // first element in the buffer
  int64_t numel = 0;   // elements, a multiple of the group size (the tail past the last parameter is padding)
  std::vector<size_t> parameters;  // indices into parameters(), in buffer order
};

// Where one parameter's gradient lives in the buffer.
struct GradRange {
  size_t bucket = 0;
  int64_t offset = 0;  // first element in the buffer
  int64_t numel = 0;
};

class DistributedDataParallel {
 public:
  // Every parameter must be a distinct leaf that requires grad, on dp.device(); gradients they
  // hold are replaced by zeroed views into the buffer. `dp` must outlive this object.
  DistributedDataParallel(std::vector<Tensor> parameters, Communicator& dp, DdpOptions options = {});
  ~DistributedDataParallel();  // waits for reductions still in flight
  DistributedDataParallel(const DistributedDataParallel&) = delete;
  DistributedDataParallel& operator=(const DistributedDataParallel&) = delete;

  // On by default. Off: backward passes accumulate into the buffer and launch nothing.
  // Refused for GradSync::Sharded, which has no buffer to accumulate into.
  void set_grad_sync(bool enabled);
  bool grad_sync_enabled() const;

  // Grad sync off for the scope's lifetime (the micro-batches before the last), restored after.
  class NoSyncScope {
   public:
    explicit NoSyncScope(DistributedDataParallel& ddp);
    ~NoSyncScope();
    NoSyncScope(const NoSyncScope&) = delete;
    NoSyncScope& operator=(const NoSyncScope&) = delete;

   private:
    DistributedDataParallel& ddp_;
    bool previous_;
  };
  [[nodiscard]] NoSyncScope no_sync() { return NoSyncScope(*this); }

  // Starts the buckets not started yet, in order, and waits for every reduction: the buffer then
  // holds the reduced gradients. Collective over the group (every rank calls it once per step).
  void finish_grad_sync();
  // Zeros the buffer (and so every parameter's gradient). Refused while a reduction is in flight.
  void zero_grad();

  const std::vector<Tensor>& parameters() const;
  Communicator& communicator() const;
  const DdpOptions& options() const;
  const Tensor& grad_buffer() const;  // 1-D grad_dtype; undefined for GradSync::Sharded
  // Persistent gradient bytes: the full buffer, or the shard buffer for GradSync::Sharded.
  size_t grad_buffer_bytes() const;
  // This rank's range [offset, offset + numel) of bucket b, in buffer elements.
  GradRange bucket_shard(size_t b) const;
  // This rank's reduced gradient for bucket_shard(b) (1-D grad_dtype view); valid after finish_grad_sync.
  Tensor bucket_grad_shard(size_t b) const;
  const std::vector<GradBucket>& buckets() const;
  const std::vector<GradRange>& grad_ranges() const;  // aligned with parameters()

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace tessera
