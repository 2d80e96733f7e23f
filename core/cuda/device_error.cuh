// Input validation that only a kernel can do (values that live on the GPU: token ids, integer
// divisors), reported to the host as an ordinary tessera::Error at the call that caused it.
// A kernel records the smallest offending element index with report_bad_index(); the launcher
// then calls DeviceIndexCheck::first_bad(), which copies those 8 bytes back and waits for the
// stream. That wait is the price of an exact error at the call that caused it (which element,
// which value); callers use it where the stream is idle anyway or the path is rare. Kernels
// that must not write anything after a bad input read the slot themselves (kNoBadIndex).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "core/cuda/cuda_check.h"
#include "core/cuda/deferred_checks.h"
#include "core/tensor.h"

namespace tessera::cuda {

__device__ __forceinline__ void report_bad_index(unsigned long long* slot, int64_t index) {
  atomicMin(slot, static_cast<unsigned long long>(index));
}

class DeviceIndexCheck {
 public:
  DeviceIndexCheck(Device device, cudaStream_t stream)
      : slot_(Tensor::empty({1}, DType::I64, device)), stream_(stream) {
    TS_CUDA_CHECK(cudaMemsetAsync(slot_.data_ptr(), 0xff, sizeof(unsigned long long), stream_));
  }

  unsigned long long* slot() const { return static_cast<unsigned long long*>(slot_.data_ptr()); }

  // Waits for the work queued so far; the smallest reported index, or -1 if none. While the
  // stream is captured into a CUDA graph nothing can wait: the check goes to the capture
  // (deferred_index_checks), which reads it after every replay and throws `what` for a bad
  // index; -1 then.
  int64_t first_bad(const std::string& what) const {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    TS_CUDA_CHECK(cudaStreamIsCapturing(stream_, &capture));
    if (capture == cudaStreamCaptureStatusActive) {
      std::vector<DeferredIndexCheck>* checks = deferred_index_checks();
      TS_CHECK(checks != nullptr, what, ": a device-side check inside a stream capture that is not a Tessera graph");
      checks->push_back({slot_, what});
      return -1;
    }
    unsigned long long value = 0;
    TS_CUDA_CHECK(cudaMemcpyAsync(&value, slot(), sizeof(value), cudaMemcpyDeviceToHost, stream_));
    TS_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return value == kNoBadIndex ? -1 : static_cast<int64_t>(value);
  }

 private:
  Tensor slot_;
  cudaStream_t stream_;
};

}  // namespace tessera::cuda
