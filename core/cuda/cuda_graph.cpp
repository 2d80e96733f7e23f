// CUDA graphs behind core/device_graph.h: stream capture on the device's compute stream, with
// the caching allocator serving the capturing thread from a private pool.
#include <cuda_runtime_api.h>

#include <exception>
#include <string>

#include "core/check.h"
#include "core/cuda/cuda_backend.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/deferred_checks.h"
#include "core/cuda/stream.h"
#include "core/device_graph.h"

namespace tessera {

namespace cuda {
std::vector<DeferredIndexCheck>*& deferred_index_checks() {
  thread_local std::vector<DeferredIndexCheck>* checks = nullptr;
  return checks;
}
}  // namespace cuda

namespace {

class CudaGraph final : public DeviceGraph {
 public:
  CudaGraph(int device, int pool) : device_(device), pool_(pool) {}
  ~CudaGraph() override {
    CudaDeviceGuard guard(device_);
    // Replays may still be queued: the pool's blocks return to the shared cache only after.
    cudaStreamSynchronize(cuda_backend(device_).stream());
    if (exec_) cudaGraphExecDestroy(exec_);
    if (graph_) cudaGraphDestroy(graph_);
    cuda_backend(device_).caching_allocator().destroy_private_pool(pool_);
  }
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  void replay() override {
    CudaDeviceGuard guard(device_);
    cudaStream_t stream = cuda_backend(device_).stream();
    TS_CUDA_CHECK(cudaGraphLaunch(exec_, stream));
    if (checks_.empty()) return;
    // Device-side input checks (token ids in range) the capture could not wait for.
    std::vector<unsigned long long> bad(checks_.size());
    for (size_t i = 0; i < checks_.size(); ++i)
      TS_CUDA_CHECK(cudaMemcpyAsync(&bad[i], checks_[i].slot.data_ptr(), sizeof(bad[i]), cudaMemcpyDeviceToHost,
                                    stream));
    TS_CUDA_CHECK(cudaStreamSynchronize(stream));
    for (size_t i = 0; i < checks_.size(); ++i)
      TS_CHECK(bad[i] == cuda::kNoBadIndex, checks_[i].what, " at position ", bad[i],
               " (found by a CUDA graph replay; the step's results are not valid)");
  }
  size_t pool_bytes() const override { return cuda_backend(device_).caching_allocator().private_pool_bytes(pool_); }

  void capture(const std::function<void()>& body) {
    CudaBackend& gpu = cuda_backend(device_);
    CudaDeviceGuard guard(device_);
    cudaStream_t stream = gpu.stream();
    // Relaxed mode: the private pool may grow with cudaMalloc while capturing. Waiting on the
    // capturing stream and copies from pageable host memory still fail, naming the call.
    TS_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
    gpu.caching_allocator().use_private_pool(pool_);
    cuda::deferred_index_checks() = &checks_;
    std::string failure;
    try {
      body();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    gpu.caching_allocator().use_private_pool(-1);
    cuda::deferred_index_checks() = nullptr;
    cudaError_t status = cudaStreamEndCapture(stream, &graph_);
    if (failure.empty() && status != cudaSuccess) failure = cudaGetErrorString(status);
    cudaGetLastError();  // a failed capture leaves a (non-sticky) error behind
    TS_CHECK(failure.empty(), "CUDA graph capture of the training step failed: ", failure,
             " (something in the step synchronizes with the host or leaves the compute stream; "
             "set train.cuda_graph: false to run it without a graph)");
    TS_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
  }

 private:
  int device_;
  int pool_;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
  std::vector<cuda::DeferredIndexCheck> checks_;
};

}  // namespace

std::unique_ptr<DeviceGraph> capture_device_graph(Device device, const std::function<void()>& body) {
  TS_CHECK(device.is_cuda(), "capture_device_graph: graphs capture CUDA work, not ", device.str());
  CudaBackend& gpu = cuda_backend(device.index);
  auto graph = std::make_unique<CudaGraph>(device.index, gpu.caching_allocator().create_private_pool());
  graph->capture(body);
  return graph;
}

}  // namespace tessera
