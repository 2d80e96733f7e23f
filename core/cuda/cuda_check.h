// TS_CUDA_CHECK: checks a CUDA runtime call and throws tessera::Error naming the call, the
// error string, file and line. Usable from .cu and .cpp files (standard headers only).
#pragma once

#include <cuda_runtime_api.h>

#include "core/check.h"

#define TS_CUDA_OK(status) ((status) == cudaSuccess)
#define TS_CUDA_CHECK(call) TS_CHECK_CALL(call, cudaError_t, TS_CUDA_OK, cudaGetErrorString)
