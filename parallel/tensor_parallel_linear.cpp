// ColumnParallelLinear and RowParallelLinear (see tensor_parallel_linear.h).
#include "parallel/tensor_parallel_linear.h"

#include <string_view>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/check.h"
#include "core/ops/ops.h"
#include "parallel/communicator.h"
#include "parallel/tp_mappings.h"

namespace tessera {

namespace {

int group_size(const Communicator* tp) { return tp ? tp->size() : 1; }
int group_rank(const Communicator* tp) { return tp ? tp->rank() : 0; }

// `split_features` must divide into `parts` equal slices per tp rank.
void check_sizes(std::string_view layer, int64_t in_features, int64_t out_features, std::string_view split_name,
                 int64_t split_features, int64_t parts, const Communicator* tp) {
  TS_CHECK(in_features > 0 && out_features > 0, layer, ": sizes must be positive, got in=", in_features,
           " out=", out_features);
  if (tp == nullptr && parts == 1) return;
  const int64_t multiple = parts * group_size(tp);
  TS_CHECK(split_features % multiple == 0, layer, " on group '", tp ? tp->name() : "none", "' (rank ",
           group_rank(tp), " of ", group_size(tp), "): ", split_name, "=", split_features,
           " does not divide by the tensor-parallel size ", group_size(tp),
           (parts > 1 ? " times output_blocks" : ""), "; choose ", split_name, " as a multiple of ", multiple);
}

// This rank's part of the full [out, in] weight that Linear would draw: along `dim`, each of
// `blocks` equal blocks contributes its rank-th slice (blocks = 1: one contiguous slice).
Tensor weight_shard(int64_t in_features, int64_t out_features, int64_t dim, int64_t blocks, const Communicator* tp,
                    Generator& generator, double init_std, const ParamOptions& options) {
  NoGradGuard no_grad;
  Tensor full = Tensor::empty({out_features, in_features}, options.dtype, options.device);
  normal_(full, generator, 0.0, init_std);
  if (tp == nullptr) return full;
  std::vector<Tensor> slices;
  for (const Tensor& block : chunk(full, blocks, dim)) {
    int64_t length = block.size(dim) / tp->size();
    slices.push_back(block.narrow(dim, tp->rank() * length, length));
  }
  return cat(slices, dim);
}

}  // namespace

ColumnParallelLinear::ColumnParallelLinear(int64_t in_features, int64_t out_features, Communicator* tp,
                                           Generator& generator, ColumnParallelOptions options)
    : tp_(tp), options_(options) {
  TS_CHECK(options.output_blocks >= 1, "ColumnParallelLinear: output_blocks must be >= 1, got ",
           options.output_blocks);
  check_sizes("ColumnParallelLinear", in_features, out_features, "out_features", out_features, options.output_blocks,
              tp);
  TS_CHECK(!(options.gather_output && options.sequence_parallel),
           "ColumnParallelLinear: gather_output and sequence_parallel are exclusive; a sequence-parallel column "
           "layer feeds a RowParallelLinear, so set gather_output = false");
  TS_CHECK(tp != nullptr || !options.sequence_parallel,
           "ColumnParallelLinear: sequence_parallel needs a tensor-parallel group; pass tp or set it to false");
  weight_ = register_parameter("weight", weight_shard(in_features, out_features, 0, options.output_blocks, tp,
                                                      generator, options.init_std, options.param));
  if (options.bias) {
    bias_ = register_parameter(
        "bias", Tensor::zeros({out_features / group_size(tp)}, options.param.dtype, options.param.device));
  }
}

Tensor ColumnParallelLinear::full_input(const Tensor& x) const {
  if (tp_ == nullptr) return x;
  return options_.sequence_parallel ? gather_from_sequence_parallel(x, *tp_, options_.sequence_dim)
                                    : copy_to_tensor_parallel(x, *tp_);
}

Tensor ColumnParallelLinear::forward(const Tensor& x) const {
  Tensor y = linear(full_input(x), weight_, bias_);
  // The adapter takes x as it came (replicated or a sequence shard) and enters the tp region itself.
  if (lora_ && lora_->active()) y = y + lora_->forward(x);
  return tp_ != nullptr && options_.gather_output ? gather_from_tensor_parallel(y, *tp_) : y;
}

LinearAndGelu ColumnParallelLinear::forward_and_gelu(const Tensor& x) const {
  if ((lora_ && lora_->active()) || (tp_ != nullptr && options_.gather_output)) return {forward(x), Tensor()};
  return linear_and_gelu(full_input(x), weight_, bias_);
}

LoraAdapter& ColumnParallelLinear::attach_lora(Generator& init, Generator* dropout_generator,
                                               LoraAdapterOptions options) {
  TS_CHECK(lora_ == nullptr, "ColumnParallelLinear: attach_lora called twice on one layer");
  lora_ = register_module(
      "adapter", std::make_shared<LoraAdapter>(LoraPlacement::ColumnParallel, weight_, tp_, options_.sequence_parallel,
                                               options_.sequence_dim, init, dropout_generator, options));
  return *lora_;
}

RowParallelLinear::RowParallelLinear(int64_t in_features, int64_t out_features, Communicator* tp, Generator& generator,
                                     RowParallelOptions options)
    : tp_(tp), options_(options) {
  check_sizes("RowParallelLinear", in_features, out_features, "in_features", in_features, 1, tp);
  TS_CHECK(options.input_is_parallel || !options.sequence_parallel,
           "RowParallelLinear: sequence_parallel needs input_is_parallel = true (the input comes from a "
           "ColumnParallelLinear)");
  TS_CHECK(tp != nullptr || !options.sequence_parallel,
           "RowParallelLinear: sequence_parallel needs a tensor-parallel group; pass tp or set it to false");
  weight_ = register_parameter(
      "weight", weight_shard(in_features, out_features, 1, 1, tp, generator, options.init_std, options.param));
  if (options.bias) {
    bias_ = register_parameter("bias", Tensor::zeros({out_features}, options.param.dtype, options.param.device));
  }
}

Tensor RowParallelLinear::forward(const Tensor& x) const { return forward_with(x, InputActivation::None); }

Tensor RowParallelLinear::forward_of_gelu(const Tensor& x, const Tensor& gelu_of_x) const {
  return forward_with(x, InputActivation::Gelu, gelu_of_x);
}

Tensor RowParallelLinear::forward_of_swiglu(const Tensor& x) const {
  TS_CHECK(tp_ == nullptr || options_.input_is_parallel,
           "RowParallelLinear::forward_of_swiglu: the packed gate/up input must come split by a column-parallel layer "
           "(input_is_parallel = true)");
  return forward_with(x, InputActivation::Swiglu);
}

Tensor RowParallelLinear::forward_with(const Tensor& x, InputActivation activation, const Tensor& gelu_of_x) const {
  // gelu_of_x is of x as given: it stands for the product's input only where that is x itself.
  const Tensor known_gelu = tp_ == nullptr || options_.input_is_parallel ? gelu_of_x : Tensor();
  auto product = [activation, &known_gelu](const Tensor& in, const Tensor& weight, const Tensor& bias) {
    switch (activation) {
      case InputActivation::Gelu: return linear_of_gelu(in, weight, bias, known_gelu);
      case InputActivation::Swiglu: return linear_of_swiglu(in, weight, bias);
      case InputActivation::None: break;
    }
    return linear(in, weight, bias);
  };
  // What the adapter sees: the activation's output, through differentiable ops.
  auto activated = [activation](const Tensor& in) {
    if (activation == InputActivation::Gelu) return gelu(in);
    if (activation != InputActivation::Swiglu) return in;
    const int64_t half = in.size(-1) / 2;
    std::vector<Tensor> gate_up = split(in, {half, half}, -1);
    return swiglu(gate_up[0], gate_up[1]);
  };
  const bool adapted = lora_ && lora_->active();
  if (tp_ == nullptr) {
    Tensor y = product(x, weight_, bias_);
    return adapted ? y + lora_->forward(activated(x)) : y;
  }
  // The activations are elementwise (SwiGLU per gate/up pair, both halves on this rank): applying
  // one to this rank's shard of the input is applying it to all.
  Tensor x_parallel = options_.input_is_parallel ? x : scatter_to_tensor_parallel(x, *tp_);
  Tensor partial = product(x_parallel, weight_, Tensor());
  Tensor y = options_.sequence_parallel ? reduce_scatter_to_sequence_parallel(partial, *tp_, options_.sequence_dim)
                                        : reduce_from_tensor_parallel(partial, *tp_);
  // The adapter reduces its own [..., rank] partial product, so B sees the summed h.
  if (adapted) y = y + lora_->forward(activated(x_parallel));
  return bias_.defined() ? y + bias_ : y;
}

LoraAdapter& RowParallelLinear::attach_lora(Generator& init, Generator* dropout_generator, LoraAdapterOptions options) {
  TS_CHECK(lora_ == nullptr, "RowParallelLinear: attach_lora called twice on one layer");
  lora_ = register_module(
      "adapter", std::make_shared<LoraAdapter>(LoraPlacement::RowParallel, weight_, tp_, options_.sequence_parallel,
                                               options_.sequence_dim, init, dropout_generator, options));
  return *lora_;
}

}  // namespace tessera
