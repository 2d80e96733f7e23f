#include "core/nn/layers.h"

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"

namespace tessera {

namespace {

Tensor normal_parameter(const Shape& shape, Generator& generator, double stddev, const ParamOptions& options) {
  NoGradGuard no_grad;
  Tensor t = Tensor::empty(shape, options.dtype, options.device);
  return normal_(t, generator, 0.0, stddev);
}

}  // namespace

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, Generator& generator, double init_std,
               ParamOptions options) {
  TS_CHECK(in_features > 0 && out_features > 0, "Linear: sizes must be positive, got in=", in_features,
           " out=", out_features);
  weight_ = register_parameter("weight", normal_parameter({out_features, in_features}, generator, init_std, options));
  if (bias) bias_ = register_parameter("bias", Tensor::zeros({out_features}, options.dtype, options.device));
}

Tensor Linear::forward(const Tensor& x) const { return linear(x, weight_, bias_); }

Embedding::Embedding(int64_t num_embeddings, int64_t dim, Generator& generator, double init_std, ParamOptions options) {
  TS_CHECK(num_embeddings > 0 && dim > 0, "Embedding: sizes must be positive, got ", num_embeddings, "x", dim);
  weight_ = register_parameter("weight", normal_parameter({num_embeddings, dim}, generator, init_std, options));
}

Tensor Embedding::forward(const Tensor& ids) const { return embedding(weight_, ids); }

LayerNorm::LayerNorm(int64_t dim, double eps, bool bias, ParamOptions options) : eps_(eps) {
  weight_ = register_parameter("weight", Tensor::ones({dim}, options.dtype, options.device));
  if (bias) bias_ = register_parameter("bias", Tensor::zeros({dim}, options.dtype, options.device));
}

Tensor LayerNorm::forward(const Tensor& x) const { return layer_norm(x, weight_, bias_, eps_); }

RMSNorm::RMSNorm(int64_t dim, double eps, ParamOptions options) : eps_(eps) {
  weight_ = register_parameter("weight", Tensor::ones({dim}, options.dtype, options.device));
}

Tensor RMSNorm::forward(const Tensor& x) const { return rms_norm(x, weight_, eps_); }

}  // namespace tessera
