#include "core/ops/random_ops.h"

#include "core/autograd/grad_mode.h"
#include "core/backend.h"

namespace tessera {

Tensor rand(const Shape& shape, Generator& generator, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  return uniform_(t, generator, 0.0, 1.0);
}

Tensor randn(const Shape& shape, Generator& generator, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  return normal_(t, generator, 0.0, 1.0);
}

Tensor& uniform_(Tensor& t, Generator& generator, double low, double high) {
  TS_CHECK(low < high, "uniform_: low ", low, " must be below high ", high);
  TS_CHECK(!(GradMode::is_enabled() && t.requires_grad()), "uniform_: in-place init of ", t,
           " that requires grad; initialise under NoGradGuard");
  backend_for(t.device()).fill_uniform(t, generator.next(), low, high);
  return t;
}

Tensor& normal_(Tensor& t, Generator& generator, double mean, double stddev) {
  TS_CHECK(stddev >= 0.0, "normal_: stddev ", stddev, " must be >= 0");
  TS_CHECK(!(GradMode::is_enabled() && t.requires_grad()), "normal_: in-place init of ", t,
           " that requires grad; initialise under NoGradGuard");
  backend_for(t.device()).fill_normal(t, generator.next(), mean, stddev);
  return t;
}

}  // namespace tessera
