// LoraAdapter (see lora.h).
#include "parallel/lora.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/check.h"
#include "core/ops/ops.h"
#include "core/ops/random_ops.h"
#include "parallel/communicator.h"
#include "parallel/tp_mappings.h"

namespace tessera {

namespace {

// Holds one factor under the name "weight", so the adapter's parameters read
// adapter.linear_in.weight / adapter.linear_out.weight (NeMo's names).
class LoraFactor : public Module {
 public:
  explicit LoraFactor(Tensor weight) { register_parameter("weight", std::move(weight)); }
};

}  // namespace

LoraAdapter::LoraAdapter(LoraPlacement placement, const Tensor& base_weight, Communicator* tp, bool sequence_parallel,
                         int64_t sequence_dim, Generator& init, Generator* dropout_generator,
                         LoraAdapterOptions options)
    : placement_(placement),
      base_weight_(base_weight),
      tp_(tp),
      sequence_parallel_(sequence_parallel),
      sequence_dim_(sequence_dim),
      dropout_generator_(dropout_generator),
      options_(options) {
  TS_CHECK(base_weight.defined() && base_weight.dim() == 2, "LoraAdapter: the base weight must be 2-D, got ",
           base_weight.defined() ? base_weight.shape() : Shape{});
  TS_CHECK(options.rank > 0, "lora.rank must be positive, got ", options.rank);
  TS_CHECK(options.alpha > 0.0, "lora.alpha must be positive, got ", options.alpha);
  TS_CHECK(options.dropout >= 0.0 && options.dropout < 1.0, "lora.dropout ", options.dropout, " must be in [0, 1)");
  TS_CHECK(options.dropout == 0.0 || dropout_generator != nullptr, "LoraAdapter: lora.dropout ", options.dropout,
           " needs a dropout generator; pass one or set dropout to 0");
  const bool row = placement == LoraPlacement::RowParallel;
  const int tp_size = tp ? tp->size() : 1;
  const int64_t out_local = base_weight.size(0), in_local = base_weight.size(1);
  const int64_t in_full = row ? in_local * tp_size : in_local;
  const DType dtype = base_weight.dtype();
  const Device device = base_weight.device();
  Tensor a, b;
  {
    NoGradGuard no_grad;
    // Every rank draws the full A (one draw) and keeps its slice: any tp size starts alike.
    Tensor full = Tensor::empty({options.rank, in_full}, dtype, device);
    const double bound = 1.0 / std::sqrt(double(in_full));  // PEFT's kaiming_uniform_(a = sqrt(5))
    uniform_(full, init, -bound, bound);
    a = row && tp ? full.narrow(1, tp->rank() * in_local, in_local).contiguous() : full;
    b = Tensor::zeros({out_local, options.rank}, dtype, device);
  }
  a_ = register_module("linear_in", std::make_shared<LoraFactor>(a))->named_parameters()[0].second;
  b_ = register_module("linear_out", std::make_shared<LoraFactor>(b))->named_parameters()[0].second;
}

Tensor LoraAdapter::forward(const Tensor& x) const {
  if (!active()) return Tensor();
  Tensor in = options_.dropout > 0.0 && is_training() ? dropout(x, options_.dropout, *dropout_generator_) : x;
  Tensor h = linear(in, a_) * scale();  // [..., rank]: scaling the narrow side is cheapest
  if (tp_ != nullptr) {
    if (placement_ == LoraPlacement::ColumnParallel) {
      h = sequence_parallel_ ? gather_from_sequence_parallel(h, *tp_, sequence_dim_) : copy_to_tensor_parallel(h, *tp_);
    } else {
      h = sequence_parallel_ ? reduce_scatter_to_sequence_parallel(h, *tp_, sequence_dim_)
                             : reduce_from_tensor_parallel(h, *tp_);
    }
  }
  return linear(h, b_);
}

void LoraAdapter::set_enabled(bool enabled) {
  TS_CHECK(!merged_,
           "LoraAdapter: set_enabled on a merged adapter (its term is inside the base weight); "
           "unmerge() first");
  enabled_ = enabled;
}

void LoraAdapter::merge() {
  TS_CHECK(!merged_, "LoraAdapter: merge() on an adapter already merged");
  TS_CHECK(enabled_, "LoraAdapter: merge() on a disabled adapter; enable it first");
  NoGradGuard no_grad;
  base_weight_.add_(matmul(b_, a_), scale());
  merged_ = true;
}

void LoraAdapter::unmerge() {
  TS_CHECK(merged_, "LoraAdapter: unmerge() on an adapter that is not merged");
  NoGradGuard no_grad;
  base_weight_.add_(matmul(b_, a_), -scale());
  merged_ = false;
}

std::vector<Tensor> LoraAdapter::replicated_parameters() const {
  if (tp_ == nullptr) return {};
  return {placement_ == LoraPlacement::ColumnParallel ? a_ : b_};
}

}  // namespace tessera
