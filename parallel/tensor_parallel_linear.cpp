// ColumnParallelLinear and RowParallelLinear (see tensor_parallel_linear.h).
#include "parallel/tensor_parallel_linear.h"

#include <string_view>

#include "core/autograd/grad_mode.h"
#include "core/check.h"
#include "core/ops/ops.h"
#include "parallel/tp_mappings.h"

namespace tessera {

namespace {

void check_sizes(std::string_view layer, int64_t in_features, int64_t out_features, std::string_view split_name,
                 int64_t split_features, const Communicator& tp) {
  TS_CHECK(in_features > 0 && out_features > 0, layer, ": sizes must be positive, got in=", in_features,
           " out=", out_features);
  TS_CHECK(split_features % tp.size() == 0, layer, " on group '", tp.name(), "' (rank ", tp.rank(), " of ", tp.size(),
           "): ", split_name, "=", split_features, " does not divide by the tensor-parallel size ", tp.size(),
           "; choose ", split_name, " as a multiple of ", tp.size());
}

// This rank's slice along `dim` of the full [out, in] weight that Linear would draw.
Tensor weight_shard(int64_t in_features, int64_t out_features, int64_t dim, const Communicator& tp,
                    Generator& generator, double init_std, const ParamOptions& options) {
  NoGradGuard no_grad;
  Tensor full = Tensor::empty({out_features, in_features}, options.dtype, options.device);
  normal_(full, generator, 0.0, init_std);
  int64_t length = full.size(dim) / tp.size();
  return full.narrow(dim, tp.rank() * length, length).contiguous();
}

}  // namespace

ColumnParallelLinear::ColumnParallelLinear(int64_t in_features, int64_t out_features, Communicator& tp,
                                           Generator& generator, ColumnParallelOptions options)
    : tp_(&tp), options_(options) {
  check_sizes("ColumnParallelLinear", in_features, out_features, "out_features", out_features, tp);
  TS_CHECK(!(options.gather_output && options.sequence_parallel),
           "ColumnParallelLinear: gather_output and sequence_parallel are exclusive; a sequence-parallel column "
           "layer feeds a RowParallelLinear, so set gather_output = false");
  weight_ = register_parameter(
      "weight", weight_shard(in_features, out_features, 0, tp, generator, options.init_std, options.param));
  if (options.bias) {
    bias_ = register_parameter("bias",
                               Tensor::zeros({out_features / tp.size()}, options.param.dtype, options.param.device));
  }
}

Tensor ColumnParallelLinear::forward(const Tensor& x) const {
  Tensor x_full =
      options_.sequence_parallel ? gather_from_sequence_parallel(x, *tp_) : copy_to_tensor_parallel(x, *tp_);
  Tensor y = linear(x_full, weight_, bias_);
  return options_.gather_output ? gather_from_tensor_parallel(y, *tp_) : y;
}

RowParallelLinear::RowParallelLinear(int64_t in_features, int64_t out_features, Communicator& tp, Generator& generator,
                                     RowParallelOptions options)
    : tp_(&tp), options_(options) {
  check_sizes("RowParallelLinear", in_features, out_features, "in_features", in_features, tp);
  TS_CHECK(options.input_is_parallel || !options.sequence_parallel,
           "RowParallelLinear: sequence_parallel needs input_is_parallel = true (the input comes from a "
           "ColumnParallelLinear)");
  weight_ = register_parameter(
      "weight", weight_shard(in_features, out_features, 1, tp, generator, options.init_std, options.param));
  if (options.bias) {
    bias_ = register_parameter("bias", Tensor::zeros({out_features}, options.param.dtype, options.param.device));
  }
}

Tensor RowParallelLinear::forward(const Tensor& x) const {
  Tensor x_parallel = options_.input_is_parallel ? x : scatter_to_tensor_parallel(x, *tp_);
  Tensor partial = linear(x_parallel, weight_);
  Tensor y = options_.sequence_parallel ? reduce_scatter_to_sequence_parallel(partial, *tp_)
                                        : reduce_from_tensor_parallel(partial, *tp_);
  return bias_.defined() ? y + bias_ : y;
}

}  // namespace tessera
