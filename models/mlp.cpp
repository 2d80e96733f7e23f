#include "models/mlp.h"

#include <cmath>

#include "core/ops/ops.h"

namespace tessera {

Mlp::Mlp(const std::vector<int64_t>& sizes, Generator& generator, ParamOptions options) {
  TS_CHECK(sizes.size() >= 2, "Mlp: sizes needs at least {in, out}, got ", sizes.size(), " entries");
  layers_ = register_module("layers", std::make_shared<ModuleList>());
  for (size_t i = 0; i + 1 < sizes.size(); ++i) {
    double init_std = 1.0 / std::sqrt(static_cast<double>(sizes[i]));
    layers_->push_back(std::make_shared<Linear>(sizes[i], sizes[i + 1], true, generator, init_std, options));
  }
}

Tensor Mlp::forward(const Tensor& x) const {
  Tensor h = x;
  for (size_t i = 0; i < layers_->size(); ++i) {
    h = static_cast<const Linear&>(*(*layers_)[i]).forward(h);
    if (i + 1 < layers_->size()) h = gelu(h);
  }
  return h;
}

}  // namespace tessera
