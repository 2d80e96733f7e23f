// ZeRO-3 / FSDP: sharded parameters gathered per unit with prefetch (see fsdp.h).
#include "parallel/fsdp.h"

#include <algorithm>
#include <deque>

#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/check.h"

namespace tessera {

namespace {
constexpr size_t kMaxReductionsInFlight = 2;
}

struct FullyShardedDataParallel::State {
  enum class Phase { Released, Gathering, Gathered };

  struct Unit {
    std::vector<Tensor> parameters;
    FsdpUnitLayout layout;
    DType dtype = DType::F32;
    Tensor flat;         // [numel] over the storage every parameter views; released when not gathered
    Tensor param_shard;  // [S], dtype
    Tensor grad_shard;   // [S], FsdpOptions::grad_dtype
    Phase phase = Phase::Released;
    std::unique_ptr<WorkHandle> gather;
    Tensor staging;  // [numel] grad_dtype while its backward accumulates; the parameters' grads view it
    size_t grads_pending = 0;
    size_t bytes() const { return size_t(layout.numel) * dtype_size(dtype); }
    DType grad_dtype = DType::F32;
    size_t reduce_bytes() const { return size_t(layout.numel + layout.shard_numel) * dtype_size(grad_dtype); }
  };

  struct Reduction {
    size_t unit;
    Tensor staging, out;
    std::unique_ptr<WorkHandle> work;
  };

  Communicator* comm = nullptr;
  FsdpOptions options;
  std::vector<Unit> units;
  std::deque<Reduction> reductions;  // in flight, oldest first
  FsdpStats stats;

  std::string where() const { return "FSDP (dp group '" + comm->name() + "')"; }

  void gather(size_t u, bool wait) {
    Unit& unit = units[u];
    if (unit.phase == Phase::Released) {
      NoGradGuard no_grad;
      Tensor fresh = Tensor::empty({unit.layout.numel}, unit.dtype, comm->device());
      unit.flat.storage()->refill(*fresh.storage());
      unit.gather = comm->all_gather_async(unit.param_shard, unit.flat);
      unit.phase = Phase::Gathering;
      ++stats.all_gathers;
      stats.gathered_bytes += unit.bytes();
      stats.peak_gathered_bytes = std::max(stats.peak_gathered_bytes, stats.gathered_bytes);
    }
    if (wait && unit.phase == Phase::Gathering) {
      unit.gather->wait();
      unit.gather.reset();
      unit.phase = Phase::Gathered;
    }
  }

  void release(size_t u) {
    Unit& unit = units[u];
    if (unit.phase == Phase::Released) return;
    if (unit.phase == Phase::Gathering) unit.gather->wait();  // MPI may still be writing into it
    unit.gather.reset();
    unit.flat.storage()->release();
    unit.phase = Phase::Released;
    stats.gathered_bytes -= unit.bytes();
  }

  void check_units(const std::vector<size_t>& list, const char* what) const {
    TS_CHECK(!list.empty(), where(), ": ", what, " needs at least one unit");
    for (size_t u : list)
      TS_CHECK(u < units.size(), where(), ": ", what, ": unit ", u, " does not exist (", units.size(), " units)");
  }

  void prefetch(size_t from, int direction) {
    for (int k = 1; k <= options.prefetch; ++k) {
      const int64_t u = int64_t(from) + direction * k;
      if (u < 0 || u >= int64_t(units.size())) break;
      gather(size_t(u), false);
    }
  }

  // Backward reached these units (their output's identity node): gather, prefetch the units
  // before, and route their parameters' gradients into staging (grad_dtype).
  void pre_backward(const std::vector<size_t>& list) {
    for (size_t u : list) gather(u, true);
    prefetch(list.front(), -1);
    NoGradGuard no_grad;
    for (size_t u : list) {
      Unit& unit = units[u];
      if (unit.staging.defined()) continue;
      unit.staging = Tensor::zeros({unit.layout.numel}, unit.grad_dtype, comm->device());
      stats.reduce_bytes += size_t(unit.layout.numel) * dtype_size(unit.grad_dtype);
      stats.peak_reduce_bytes = std::max(stats.peak_reduce_bytes, stats.reduce_bytes);
      unit.grads_pending = unit.parameters.size();
      for (size_t i = 0; i < unit.parameters.size(); ++i) {
        const Tensor& p = unit.parameters[i];
        TS_CHECK(!p.grad().defined(), where(), ": parameter ", i, " of unit ", u, " (", p,
                 ") already holds a gradient; call finish_grad_sync() after every backward");
        p.set_grad(unit.staging.narrow(0, unit.layout.offsets[i], p.numel()).view(p.shape()));
      }
    }
  }

  void land_oldest() {
    Reduction r = std::move(reductions.front());
    reductions.pop_front();
    r.work->wait();
    NoGradGuard no_grad;
    units[r.unit].grad_shard.add_(r.out);
    stats.reduce_bytes -= size_t(r.staging.numel() + r.out.numel()) * dtype_size(r.out.dtype());
  }

  void poll() {
    while (!reductions.empty() && reductions.front().work->is_completed()) land_oldest();
    for (Reduction& r : reductions) r.work->is_completed();  // drives MPI's progress engine
  }

  // The unit's backward is over: free its parameters, reduce-scatter its gradients.
  void reduce(size_t u) {
    Unit& unit = units[u];
    release(u);
    while (reductions.size() >= kMaxReductionsInFlight) land_oldest();
    Reduction r{
        u, std::move(unit.staging), Tensor::empty({unit.layout.shard_numel}, unit.grad_dtype, comm->device()), {}};
    unit.staging = Tensor();
    for (const Tensor& p : unit.parameters) p.set_grad(Tensor());
    stats.reduce_bytes += size_t(unit.layout.shard_numel) * dtype_size(unit.grad_dtype);
    stats.peak_reduce_bytes = std::max(stats.peak_reduce_bytes, stats.reduce_bytes);
    r.work = comm->reduce_scatter_async(r.staging, r.out, options.reduction);
    ++stats.reduce_scatters;
    reductions.push_back(std::move(r));
  }

  void on_grad_ready(size_t u, size_t index) {
    Unit& unit = units[u];
    TS_CHECK(unit.staging.defined() && unit.grads_pending > 0, where(), ": the gradient of parameter ", index,
             " of unit ", u, " arrived outside the unit's backward; pass the unit's outputs through post_forward() "
             "and call finish_grad_sync() after every backward");
    if (--unit.grads_pending == 0) reduce(u);
    poll();
  }

  void finish() {
    for (size_t u = 0; u < units.size(); ++u)
      if (units[u].staging.defined()) reduce(u);
    while (!reductions.empty()) land_oldest();
    for (size_t u = 0; u < units.size(); ++u) release(u);
  }
};

FullyShardedDataParallel::FullyShardedDataParallel(std::vector<std::vector<Tensor>> units, Communicator& dp,
                                                   FsdpOptions options)
    : state_(std::make_shared<State>()) {
  State& s = *state_;
  s.comm = &dp;
  s.options = options;
  TS_CHECK(options.prefetch >= 0, s.where(), ": prefetch ", options.prefetch,
           " must be >= 0 (units gathered ahead; 0 turns prefetching off)");
  TS_CHECK(options.reduction == ReduceOp::Sum || options.reduction == ReduceOp::Avg, s.where(),
           ": reduction must be Sum or Avg");
  TS_CHECK(options.grad_dtype == DType::F32 || options.grad_dtype == DType::BF16 || options.grad_dtype == DType::F16,
           s.where(), ": grad_dtype must be f32 or the parameters' 16-bit dtype (bf16, f16), got ",
           dtype_name(options.grad_dtype));
  TS_CHECK(!units.empty(), s.where(), ": needs at least one unit of parameters");
  const int64_t n = dp.size();
  std::vector<TensorImpl*> seen;
  NoGradGuard no_grad;
  for (size_t u = 0; u < units.size(); ++u) {
    State::Unit unit;
    unit.parameters = std::move(units[u]);
    TS_CHECK(!unit.parameters.empty(), s.where(), ": unit ", u, " has no parameters");
    unit.dtype = unit.parameters.front().dtype();
    unit.grad_dtype = s.options.grad_dtype;
    TS_CHECK(unit.grad_dtype == DType::F32 || unit.grad_dtype == unit.dtype, s.where(), ": grad_dtype ",
             dtype_name(unit.grad_dtype), " needs every unit in ", dtype_name(unit.grad_dtype), " but unit ", u, " is ",
             dtype_name(unit.dtype), "; use grad_dtype f32 (grad_reduce_in_bf16 off) for mixed dtypes");
    int64_t at = 0;
    for (const Tensor& p : unit.parameters) {
      TS_CHECK(p.is_leaf() && p.requires_grad() && p.is_contiguous() && p.device() == dp.device() &&
                   p.dtype() == unit.dtype,
               s.where(), ": unit ", u, " parameter ", p, " must be a contiguous leaf that requires grad, on ",
               dp.device().str(), ", of the unit's dtype ", dtype_name(unit.dtype));
      TS_CHECK(std::find(seen.begin(), seen.end(), p.impl()) == seen.end(), s.where(), ": parameter ", p,
               " appears twice (each parameter belongs to exactly one unit)");
      seen.push_back(p.impl());
      unit.layout.offsets.push_back(at);
      at += p.numel();
    }
    unit.layout.numel = (at + n - 1) / n * n;
    unit.layout.shard_numel = unit.layout.numel / n;
    unit.layout.shard_offset = dp.rank() * unit.layout.shard_numel;
    unit.flat = Tensor::zeros({unit.layout.numel}, unit.dtype, dp.device());
    for (size_t i = 0; i < unit.parameters.size(); ++i) {
      const Tensor& p = unit.parameters[i];
      unit.flat.narrow(0, unit.layout.offsets[i], p.numel()).copy_(p.view({p.numel()}));
      p.set_storage(unit.flat.storage(), unit.layout.offsets[i]);
    }
    unit.param_shard = unit.flat.narrow(0, unit.layout.shard_offset, unit.layout.shard_numel).clone();
    unit.grad_shard = Tensor::zeros({unit.layout.shard_numel}, unit.grad_dtype, dp.device());
    unit.flat.storage()->release();
    s.units.push_back(std::move(unit));
  }
  std::weak_ptr<State> weak = state_;
  for (size_t u = 0; u < s.units.size(); ++u) {
    for (size_t i = 0; i < s.units[u].parameters.size(); ++i) {
      s.units[u].parameters[i].register_grad_ready_hook([weak, u, i](const Tensor&) {
        if (auto state = weak.lock()) state->on_grad_ready(u, i);
      });
    }
  }
}

FullyShardedDataParallel::~FullyShardedDataParallel() {
  State& s = *state_;
  for (State::Reduction& r : s.reductions) r.work->wait();
  for (State::Unit& unit : s.units)
    if (unit.gather) unit.gather->wait();
}

void FullyShardedDataParallel::pre_forward(const std::vector<size_t>& units) {
  State& s = *state_;
  s.check_units(units, "pre_forward");
  for (size_t u : units) s.gather(u, true);
  s.prefetch(units.front(), +1);
  s.poll();
}

std::vector<Tensor> FullyShardedDataParallel::post_forward(const std::vector<size_t>& units,
                                                           std::vector<Tensor> outputs) {
  State& s = *state_;
  s.check_units(units, "post_forward");
  for (size_t u : units) s.release(u);
  std::vector<Tensor> inputs;
  std::vector<size_t> where;  // index in outputs of each wrapped output
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (outputs[i].defined() && outputs[i].requires_grad()) {
      inputs.push_back(outputs[i]);
      where.push_back(i);
    }
  }
  if (inputs.empty() || !GradMode::is_enabled()) return outputs;
  std::vector<Tensor> wrapped;
  for (const Tensor& t : inputs) wrapped.push_back(t.detach());
  std::weak_ptr<State> weak = state_;
  record_op("fsdp_pre_backward", inputs, wrapped,
            [weak, units](const std::vector<Tensor>& grads, const std::vector<bool>&) {
              if (auto state = weak.lock()) state->pre_backward(units);
              return grads;
            });
  for (size_t k = 0; k < where.size(); ++k) outputs[where[k]] = wrapped[k];
  return outputs;
}

void FullyShardedDataParallel::finish_grad_sync() { state_->finish(); }

void FullyShardedDataParallel::zero_grad() {
  NoGradGuard no_grad;
  TS_CHECK(state_->reductions.empty(), state_->where(), ": zero_grad while reductions are in flight; call "
           "finish_grad_sync() first");
  for (State::Unit& unit : state_->units) unit.grad_shard.zero_();
}

void FullyShardedDataParallel::gather_full_parameters() {
  for (size_t u = 0; u < state_->units.size(); ++u) state_->gather(u, false);
  for (size_t u = 0; u < state_->units.size(); ++u) state_->gather(u, true);
}

void FullyShardedDataParallel::release_full_parameters() {
  for (size_t u = 0; u < state_->units.size(); ++u) state_->release(u);
}

size_t FullyShardedDataParallel::num_units() const { return state_->units.size(); }
const std::vector<Tensor>& FullyShardedDataParallel::unit_parameters(size_t unit) const {
  return state_->units.at(unit).parameters;
}
const FsdpUnitLayout& FullyShardedDataParallel::unit_layout(size_t unit) const { return state_->units.at(unit).layout; }
Tensor FullyShardedDataParallel::parameter_shard(size_t unit) const { return state_->units.at(unit).param_shard; }
Tensor FullyShardedDataParallel::grad_shard(size_t unit) const { return state_->units.at(unit).grad_shard; }
Communicator& FullyShardedDataParallel::communicator() const { return *state_->comm; }
const FsdpOptions& FullyShardedDataParallel::options() const { return state_->options; }
FsdpStats FullyShardedDataParallel::stats() const { return state_->stats; }

size_t FullyShardedDataParallel::gather_buffer_bound_bytes() const {
  size_t largest = 0;
  for (const State::Unit& unit : state_->units) largest = std::max(largest, unit.bytes());
  return size_t(2 + state_->options.prefetch) * largest;
}

size_t FullyShardedDataParallel::reduce_buffer_bound_bytes() const {
  size_t largest = 0;
  for (const State::Unit& unit : state_->units) largest = std::max(largest, unit.reduce_bytes());
  return (2 + kMaxReductionsInFlight) * largest;
}

}  // namespace tessera
