#include "core/cuda/cuda_backend.h"

#include <mutex>
#include <vector>

#include "core/cuda/cublaslt_gemm.h"
#include "core/cuda/cudnn_attention.h"
#include "core/cuda/kernel_profiler.h"
#include "core/cuda/runtime.h"

namespace tessera {

CudaBackend::CudaBackend(int device)
    : device_(device),
      stream_(device),
      allocator_(device),
      gemm_(std::make_unique<CublasLtGemm>(device, stream_.get())),
      attention_(std::make_unique<CudnnAttention>(device, stream_.get())) {}

CudaBackend::~CudaBackend() = default;

void CudaBackend::gemm(const Tensor& a, const Tensor& b, const Tensor& c, const GemmArgs& args) {
  gemm_->run(a, b, c, args);
}

void CudaBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale,
                            const Tensor& out, const Tensor& lse) {
  attention_->forward(q, k, v, causal, scale, out, lse);
}

void CudaBackend::attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                     const Tensor& lse, const Tensor& dL_dout, bool causal, double scale,
                                     const Tensor& dL_dq, const Tensor& dL_dk, const Tensor& dL_dv) {
  attention_->backward(q, k, v, out, lse, dL_dout, causal, scale, dL_dq, dL_dk, dL_dv);
}

CudaBackend& cuda_backend(int index) {
  // Backends are never destroyed: tensors held in static objects may release their memory
  // into the allocator during static destruction, after any registry would be gone.
  static std::mutex mutex;
  static auto* backends = new std::vector<CudaBackend*>();
  std::lock_guard<std::mutex> lock(mutex);
  int count = cuda_device_count();
  TS_CHECK(index >= 0 && index < count, "device cuda:", index, " does not exist: ", count, " GPU(s) visible",
           count == 0 ? " (no GPU or driver on this machine; run on device cpu)" : "");
  if (backends->size() < static_cast<size_t>(count)) backends->resize(static_cast<size_t>(count), nullptr);
  CudaBackend*& slot = (*backends)[static_cast<size_t>(index)];
  if (!slot) {
    start_kernel_profiler_from_environment();  // before the first GPU work
    slot = new CudaBackend(index);
  }
  return *slot;
}

}  // namespace tessera
