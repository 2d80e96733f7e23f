// Bucketed, overlapped gradient all-reduce (see distributed_data_parallel.h).
#include "parallel/distributed_data_parallel.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_set>
#include <utility>

#include "core/autograd/grad_mode.h"
#include "core/check.h"

namespace tessera {

struct DistributedDataParallel::State {
  std::vector<Tensor> parameters;
  Communicator* comm = nullptr;
  DdpOptions options;
  Tensor buffer;        // the full gradient buffer (AllReduce, ReduceScatter)
  Tensor shard_buffer;  // this rank's shard of every bucket, bucket after bucket (Sharded)
  std::vector<GradBucket> buckets;
  std::vector<GradRange> ranges;
  std::vector<Tensor> bucket_views;  // buffer ranges handed to the communicator
  bool sync_enabled = true;

  // Transient, per bucket: the gradients being gathered (Sharded) and the reduce-scatter's
  // output until it is landed in the persistent buffer (ReduceScatter, Sharded).
  std::vector<Tensor> staging;
  std::vector<Tensor> received;

  // This synchronised backward pass (reset by finish_grad_sync and zero_grad).
  std::vector<bool> ready;                        // per parameter
  std::vector<size_t> pending;                    // per bucket: parameters not ready yet
  std::vector<std::unique_ptr<WorkHandle>> work;  // per bucket, once started
  size_t next_to_start = 0;                       // buckets start in order
  size_t first_unfinished = 0;                    // polling starts here

  std::string where() const {
    return detail::concat("DistributedDataParallel on group '", comm->name(), "' (rank ", comm->rank(), " of ",
                          comm->size(), ")");
  }

  void reset_pass() {
    ready.assign(parameters.size(), false);
    pending.clear();
    for (const GradBucket& bucket : buckets) pending.push_back(bucket.parameters.size());
    work.clear();
    work.resize(buckets.size());
    staging.assign(buckets.size(), Tensor());
    received.assign(buckets.size(), Tensor());
    next_to_start = 0;
    first_unfinished = 0;
  }

  GradRange shard_of(size_t b) const {
    const GradBucket& bucket = buckets[b];
    int64_t numel = bucket.numel / comm->size();
    return {b, bucket.offset + comm->rank() * numel, numel};
  }

  Tensor grad_shard(size_t b) const {
    if (options.grad_sync == GradSync::Sharded)
      return shard_buffer.narrow(0, buckets[b].offset / comm->size(), buckets[b].numel / comm->size());
    GradRange shard = shard_of(b);
    return buffer.narrow(0, shard.offset, shard.numel);
  }

  void start_bucket(size_t b) {
    if (options.grad_sync == GradSync::AllReduce) {
      work[b] = comm->all_reduce_async(bucket_views[b], options.reduction);
      return;
    }
    received[b] = Tensor::empty({buckets[b].numel / comm->size()}, options.grad_dtype, comm->device());
    if (options.grad_sync == GradSync::ReduceScatter) {
      work[b] = comm->reduce_scatter_async(bucket_views[b], received[b], options.reduction);
      return;
    }
    // A bucket none of whose parameters got a gradient this pass contributes zeros.
    if (!staging[b].defined()) staging[b] = Tensor::zeros({buckets[b].numel}, options.grad_dtype, comm->device());
    work[b] = comm->reduce_scatter_async(staging[b], received[b], options.reduction);
  }

  // Moves bucket b's completed reduce-scatter output into the persistent gradients.
  void land(size_t b) {
    if (!received[b].defined()) return;
    NoGradGuard no_grad;
    Tensor shard = grad_shard(b);
    if (options.grad_sync == GradSync::Sharded) {
      shard.add_(received[b]);  // accumulates over the micro-batches of a step
    } else {
      shard.copy_(received[b]);
    }
    received[b] = Tensor();
    staging[b] = Tensor();
  }

  // Sharded: the parameter's gradient moves into its bucket's staging buffer and is dropped.
  void stage_gradient(size_t index) {
    const Tensor& p = parameters[index];
    const GradRange& range = ranges[index];
    const GradBucket& bucket = buckets[range.bucket];
    NoGradGuard no_grad;
    Tensor& stage = staging[range.bucket];
    if (!stage.defined()) stage = Tensor::zeros({bucket.numel}, options.grad_dtype, comm->device());
    stage.narrow(0, range.offset - bucket.offset, range.numel).copy_(p.grad().reshape({range.numel}));
    p.set_grad(Tensor());
  }

  // Starts the ready buckets that are next in order.
  void start_ready_buckets() {
    while (next_to_start < buckets.size() && pending[next_to_start] == 0) start_bucket(next_to_start++);
  }

  // Gives the reductions in flight a chance to progress (see the header's note on overlap).
  void poll() {
    while (first_unfinished < next_to_start && work[first_unfinished]->is_completed()) land(first_unfinished++);
    for (size_t b = first_unfinished + 1; b < next_to_start; ++b) work[b]->is_completed();
  }

  void on_grad_ready(size_t index) {
    if (!sync_enabled) return;
    TS_CHECK(!ready[index], where(), ": the gradient of parameter ", index, " (shape ", parameters[index].shape(),
             ") became ready twice in one synchronised backward pass; call finish_grad_sync() after each backward "
             "with grad sync on, and run the other micro-batches of gradient accumulation inside no_sync()");
    ready[index] = true;
    if (options.grad_sync == GradSync::Sharded) stage_gradient(index);
    --pending[ranges[index].bucket];
    start_ready_buckets();
    poll();
  }

  bool in_flight() const { return next_to_start > 0; }
};

namespace {

void check_parameters(const std::vector<Tensor>& parameters, const Communicator& comm, DType grad_dtype) {
  TS_CHECK(!parameters.empty(), "DistributedDataParallel: no parameters to synchronise");
  std::unordered_set<const TensorImpl*> seen;
  for (size_t i = 0; i < parameters.size(); ++i) {
    const Tensor& p = parameters[i];
    TS_CHECK(p.defined() && p.is_leaf() && p.requires_grad(), "DistributedDataParallel: parameter ", i,
             " is not a leaf tensor that requires grad; pass only trainable parameters");
    TS_CHECK(p.device() == comm.device(), "DistributedDataParallel: parameter ", i, " is on ", p.device().str(),
             " but the group '", comm.name(), "' communicates on ", comm.device().str());
    TS_CHECK(is_floating(p.dtype()), "DistributedDataParallel: parameter ", i, " has dtype ", dtype_name(p.dtype()),
             "; gradients need a floating dtype");
    TS_CHECK(seen.insert(p.impl()).second, "DistributedDataParallel: parameter ", i,
             " appears twice in the list; pass each parameter once");
    TS_CHECK(grad_dtype == DType::F32 || p.dtype() == grad_dtype, "DistributedDataParallel: grad_dtype ",
             dtype_name(grad_dtype), " needs every parameter in ", dtype_name(grad_dtype), " but parameter ", i, " is ",
             dtype_name(p.dtype()), "; use grad_dtype f32 (grad_reduce_in_bf16 off) for mixed dtypes");
  }
}

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

}  // namespace

DistributedDataParallel::DistributedDataParallel(std::vector<Tensor> parameters, Communicator& dp, DdpOptions options)
    : state_(std::make_shared<State>()) {
  TS_CHECK(options.bucket_size_mb > 0.0 && std::isfinite(options.bucket_size_mb),
           "DistributedDataParallel: bucket_size_mb must be a positive number of MiB, got ", options.bucket_size_mb);
  TS_CHECK(options.reduction == ReduceOp::Sum || options.reduction == ReduceOp::Avg,
           "DistributedDataParallel: reduction must be sum or avg, got ", reduce_op_name(options.reduction));
  TS_CHECK(options.grad_dtype == DType::F32 || options.grad_dtype == DType::BF16 || options.grad_dtype == DType::F16,
           "DistributedDataParallel: grad_dtype must be f32 or the parameters' 16-bit dtype (bf16, f16), got ",
           dtype_name(options.grad_dtype));
  check_parameters(parameters, dp, options.grad_dtype);
  State& s = *state_;
  s.parameters = std::move(parameters);
  s.comm = &dp;
  s.options = options;

  // Layout: reverse parameter order, a bucket closing once it reaches the target size.
  const int64_t target =
      std::max<int64_t>(1, static_cast<int64_t>(options.bucket_size_mb * double(1 << 20) / double(sizeof(float))));
  s.ranges.resize(s.parameters.size());
  int64_t at = 0;
  GradBucket open;
  auto close = [&] {
    open.numel = round_up(at - open.offset, dp.size());
    at = open.offset + open.numel;
    s.buckets.push_back(std::move(open));
    open = GradBucket{at, 0, {}};
  };
  for (size_t i = s.parameters.size(); i-- > 0;) {
    s.ranges[i] = {s.buckets.size(), at, s.parameters[i].numel()};
    open.parameters.push_back(i);
    at += s.parameters[i].numel();
    if (at - open.offset >= target) close();
  }
  if (!open.parameters.empty()) close();

  const bool sharded = options.grad_sync == GradSync::Sharded;
  if (sharded) {
    s.shard_buffer = Tensor::zeros({at / dp.size()}, options.grad_dtype, dp.device());
  } else {
    s.buffer = Tensor::zeros({at}, options.grad_dtype, dp.device());
    for (const GradBucket& bucket : s.buckets)
      s.bucket_views.push_back(s.buffer.narrow(0, bucket.offset, bucket.numel));
  }
  std::weak_ptr<State> weak = state_;
  for (size_t i = 0; i < s.parameters.size(); ++i) {
    const Tensor& p = s.parameters[i];
    p.set_grad(sharded ? Tensor() : s.buffer.narrow(0, s.ranges[i].offset, s.ranges[i].numel).view(p.shape()));
    p.register_grad_ready_hook([weak, i](const Tensor&) {
      if (std::shared_ptr<State> state = weak.lock()) state->on_grad_ready(i);
    });
  }
  s.reset_pass();
}

DistributedDataParallel::~DistributedDataParallel() = default;  // each WorkHandle waits when destroyed

void DistributedDataParallel::set_grad_sync(bool enabled) {
  TS_CHECK(enabled || state_->options.grad_sync != GradSync::Sharded, state_->where(),
           ": grad sync cannot be turned off with sharded gradients (ZeRO-2 keeps no full buffer to accumulate "
           "into); call finish_grad_sync() after every micro-batch's backward instead");
  state_->sync_enabled = enabled;
}
bool DistributedDataParallel::grad_sync_enabled() const { return state_->sync_enabled; }

DistributedDataParallel::NoSyncScope::NoSyncScope(DistributedDataParallel& ddp)
    : ddp_(ddp), previous_(ddp.grad_sync_enabled()) {
  ddp_.set_grad_sync(false);
}
DistributedDataParallel::NoSyncScope::~NoSyncScope() { ddp_.set_grad_sync(previous_); }

void DistributedDataParallel::finish_grad_sync() {
  State& s = *state_;
  while (s.next_to_start < s.buckets.size()) s.start_bucket(s.next_to_start++);
  for (size_t b = 0; b < s.buckets.size(); ++b) {
    s.work[b]->wait();
    s.land(b);
  }
  s.reset_pass();
}

void DistributedDataParallel::zero_grad() {
  State& s = *state_;
  TS_CHECK(!s.in_flight(), s.where(),
           ": zero_grad while gradient reductions are in flight; call finish_grad_sync() "
           "first");
  NoGradGuard no_grad;
  if (s.options.grad_sync == GradSync::Sharded) {
    s.shard_buffer.zero_();
    for (const Tensor& p : s.parameters) p.set_grad(Tensor());  // a backward left unsynchronised
  } else {
    s.buffer.zero_();
  }
  s.reset_pass();
}

const std::vector<Tensor>& DistributedDataParallel::parameters() const { return state_->parameters; }
Communicator& DistributedDataParallel::communicator() const { return *state_->comm; }
const DdpOptions& DistributedDataParallel::options() const { return state_->options; }
const Tensor& DistributedDataParallel::grad_buffer() const { return state_->buffer; }
size_t DistributedDataParallel::grad_buffer_bytes() const {
  const Tensor& persistent = state_->options.grad_sync == GradSync::Sharded ? state_->shard_buffer : state_->buffer;
  return static_cast<size_t>(persistent.numel()) * dtype_size(persistent.dtype());
}
GradRange DistributedDataParallel::bucket_shard(size_t b) const {
  TS_CHECK(b < state_->buckets.size(), "DistributedDataParallel::bucket_shard: bucket ", b, " of ",
           state_->buckets.size());
  return state_->shard_of(b);
}
Tensor DistributedDataParallel::bucket_grad_shard(size_t b) const {
  TS_CHECK(b < state_->buckets.size(), "DistributedDataParallel::bucket_grad_shard: bucket ", b, " of ",
           state_->buckets.size());
  return state_->grad_shard(b);
}
const std::vector<GradBucket>& DistributedDataParallel::buckets() const { return state_->buckets; }
const std::vector<GradRange>& DistributedDataParallel::grad_ranges() const { return state_->ranges; }

}  // namespace tessera
