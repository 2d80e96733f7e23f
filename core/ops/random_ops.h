// Random tensors and in-place random initialisation from an explicit Generator (Philox).
#pragma once

#include "core/random.h"
#include "core/tensor.h"

namespace tessera {

Tensor rand(const Shape& shape, Generator& generator, DType dtype = DType::F32, Device device = Device::cpu());
Tensor randn(const Shape& shape, Generator& generator, DType dtype = DType::F32, Device device = Device::cpu());
// In place (no autograd): uniform in [low, high) / normal(mean, stddev).
Tensor& uniform_(Tensor& t, Generator& generator, double low, double high);
Tensor& normal_(Tensor& t, Generator& generator, double mean, double stddev);

}  // namespace tessera
