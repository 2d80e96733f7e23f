// Single-device building blocks. Parameter names follow PyTorch ("weight", "bias") so state
// dicts line up with Hugging Face and Megatron checkpoints. The tensor-parallel versions
// live in parallel/.
#pragma once

#include "core/nn/module.h"
#include "core/random.h"

namespace tessera {

struct ParamOptions {
  DType dtype = DType::F32;
  Device device = Device::cpu();
};

// y = x W^T + b; W [out, in] ~ normal(0, init_std).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, Generator& generator, double init_std = 0.02,
         ParamOptions options = {});
  Tensor forward(const Tensor& x) const;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  Tensor weight_;
  Tensor bias_;
};

// weight [V, C] ~ normal(0, init_std).
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, Generator& generator, double init_std = 0.02,
            ParamOptions options = {});
  Tensor forward(const Tensor& ids) const;
  const Tensor& weight() const { return weight_; }

 private:
  Tensor weight_;
};

// weight = 1, bias = 0.
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool bias = true, ParamOptions options = {});
  Tensor forward(const Tensor& x) const;

 private:
  Tensor weight_;
  Tensor bias_;
  double eps_;
};

// weight = 1.
class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-6, ParamOptions options = {});
  Tensor forward(const Tensor& x) const;

 private:
  Tensor weight_;
  double eps_;
};

}  // namespace tessera
