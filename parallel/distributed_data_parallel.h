// DistributedDataParallel: Megatron-core's DDP gradient reduction over a data-parallel group,
// for any list of parameters (parallel knows nothing of models).
//
// Memory: one contiguous f32 gradient buffer on the communicator's device holds every
// parameter's gradient (Megatron's main_grad; f32 whatever the parameter dtype, so 16-bit
// parameters accumulate and reduce in f32). Each parameter's .grad is set to a view into it, so
// the autograd engine accumulates straight into the buffer (AccumulateGrad adds in place into an
// installed gradient, converting a bf16/f16 incoming gradient to f32).
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

struct DdpOptions {
  double bucket_size_mb = 40.0;        // target bucket size in MiB of f32 gradients (> 0)
  ReduceOp reduction = ReduceOp::Sum;  // Sum or Avg
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
  const Tensor& grad_buffer() const;  // 1-D f32
  size_t grad_buffer_bytes() const;
  const std::vector<GradBucket>& buckets() const;
  const std::vector<GradRange>& grad_ranges() const;  // aligned with parameters()

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace tessera
