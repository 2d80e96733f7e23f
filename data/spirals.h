// The two-spirals toy task (interleaved spiral arms, one class per arm): a small, non-linearly
// separable classification problem for learning smoke tests and the quickstart.
#pragma once

#include "core/random.h"
#include "core/tensor.h"

namespace tessera {

struct ClassificationData {
  Tensor features;  // [N, 2] f32
  Tensor labels;    // [N] i64
};

ClassificationData make_spirals(int64_t points_per_class, int64_t classes, double noise, Generator& generator);

}  // namespace tessera
