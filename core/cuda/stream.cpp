#include "core/cuda/stream.h"

#include <cstdio>

#include "core/cuda/cuda_check.h"

namespace tessera {

CudaStream::CudaStream(int device) : device_(device) {
  CudaDeviceGuard guard(device);
  TS_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
}

CudaStream::~CudaStream() {
  if (stream_ && cudaStreamDestroy(stream_) != cudaSuccess) std::fprintf(stderr, "tessera: cudaStreamDestroy failed\n");
}

void CudaStream::synchronize() const { TS_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

CudaEvent::CudaEvent() { TS_CUDA_CHECK(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming)); }

CudaEvent::~CudaEvent() {
  if (event_ && cudaEventDestroy(event_) != cudaSuccess) std::fprintf(stderr, "tessera: cudaEventDestroy failed\n");
}

void CudaEvent::record(cudaStream_t stream) { TS_CUDA_CHECK(cudaEventRecord(event_, stream)); }
void CudaEvent::wait_on(cudaStream_t stream) const { TS_CUDA_CHECK(cudaStreamWaitEvent(stream, event_, 0)); }
void CudaEvent::synchronize() const { TS_CUDA_CHECK(cudaEventSynchronize(event_)); }

bool CudaEvent::query() const {
  cudaError_t status = cudaEventQuery(event_);
  if (status == cudaErrorNotReady) return false;
  TS_CUDA_CHECK(status);
  return true;
}

CudaDeviceGuard::CudaDeviceGuard(int device) {
  TS_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) TS_CUDA_CHECK(cudaSetDevice(device));
}

CudaDeviceGuard::~CudaDeviceGuard() {
  int current = -1;
  if (cudaGetDevice(&current) == cudaSuccess && current != previous_) cudaSetDevice(previous_);
}

}  // namespace tessera
