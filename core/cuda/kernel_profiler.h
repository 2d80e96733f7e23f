// A built-in GPU kernel profiler on CUPTI's activity API (nsys is not on every GPU machine):
// with TESSERA_CUDA_PROFILE=FILE in the environment, every kernel, memcpy and memset of the
// process is recorded from the first use of a GPU on, and at exit FILE gets a summary: the
// profiled span, GPU busy time (the union of all activity intervals) and idle share, then one
// row per kernel name (calls, total, mean, share of busy time), largest first.
// TESSERA_CUDA_PROFILE_SKIP=N leaves out the first N seconds after the start (warm-up).
// Not set: no CUPTI call is made and nothing is recorded.
#pragma once

namespace tessera {

// Starts the profiler if the environment asks for it (idempotent, thread-safe). Called by
// cuda_backend() before the first GPU work.
void start_kernel_profiler_from_environment();

}  // namespace tessera
