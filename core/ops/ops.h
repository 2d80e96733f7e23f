// All differentiable ops. Each op checks its arguments (errors name the op and the shapes/
// dtypes involved), allocates outputs, runs the kernel of the tensors' backend and records a
// backward function that captures only what the gradient needs.
#pragma once

#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/nn.h"
#include "core/ops/random_ops.h"
#include "core/ops/reduce.h"
#include "core/ops/shape_ops.h"
