// A multi-layer perceptron (Linear -> GELU -> ... -> Linear) for toy tasks and tests.
// Parameter names: layers.0.weight, layers.0.bias, layers.1.weight, ...
#pragma once

#include <vector>

#include "core/nn/layers.h"
#include "core/nn/module.h"

namespace tessera {

class Mlp : public Module {
 public:
  // sizes = {in, hidden..., out}; weights ~ normal(0, 1/sqrt(fan_in)).
  Mlp(const std::vector<int64_t>& sizes, Generator& generator, ParamOptions options = {});
  Tensor forward(const Tensor& x) const;

 private:
  std::shared_ptr<ModuleList> layers_;
};

}  // namespace tessera
