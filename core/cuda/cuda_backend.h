// The CUDA backend: the kernels of core/backend.h on one GPU. All work is ordered on the
// device's compute stream; memory comes from the caching allocator; host<->device copies go
// through pinned staging buffers. One CudaBackend per device, created on first use by
// backend_for(Device::cuda(i)) and alive until the process exits.
//
// Kernel definitions are split by family across core/cuda/*.cu (kernels and their launchers
// may include core headers, which need only the standard library, never fmt/yaml/MPI).
#pragma once

#include <memory>

#include "core/backend.h"
#include "core/cuda/caching_allocator.h"
#include "core/cuda/stream.h"

namespace tessera {

class CublasLtGemm;
class CudnnAttention;

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device);
  ~CudaBackend() override;

  Device device() const override { return Device::cuda(device_); }
  Allocator& allocator() override { return allocator_; }
  CudaCachingAllocator& caching_allocator() { return allocator_; }
  PinnedHostAllocator& pinned_allocator() { return pinned_; }
  cudaStream_t stream() const { return stream_.get(); }
  int index() const { return device_; }
  // Blocks the host until all work queued on this device's stream has finished.
  void synchronize() const { stream_.synchronize(); }

  void copy(const Tensor& src, const Tensor& dst) override;
  void fill(const Tensor& dst, double value) override;
  void fill_uniform(const Tensor& dst, PhiloxState state, double low, double high) override;
  void fill_normal(const Tensor& dst, PhiloxState state, double mean, double stddev) override;
  void dropout(const Tensor& x, double p, PhiloxState state, const Tensor& out) override;

  void binary(BinaryOp op, const Tensor& a, const Tensor& b, const Tensor& out) override;
  void unary(UnaryOp op, const Tensor& x, const Tensor& out) override;
  void unary_backward(UnaryOp op, const Tensor& x, const Tensor& dL_dy, const Tensor& dL_dx) override;
  void affine(const Tensor& x, double scale, double shift, const Tensor& out) override;
  void pow(const Tensor& x, double exponent, const Tensor& out) override;
  void axpy(double alpha, const Tensor& x, const Tensor& y) override;
  void swiglu(const Tensor& gate, const Tensor& up, const Tensor& out) override;
  void swiglu_backward(const Tensor& gate, const Tensor& up, const Tensor& dL_dout, const Tensor& dL_dgate,
                       const Tensor& dL_dup) override;
  void swiglu_packed(const Tensor& h, const Tensor& out) override;
  void swiglu_packed_backward(const Tensor& h, const Tensor& dL_dout, const Tensor& dL_dh) override;

  void reduce_rows(RowReduceOp op, const Tensor& x, const Tensor& out) override;
  void argmax_rows(const Tensor& x, const Tensor& out_i64) override;
  void gemm(const Tensor& a, const Tensor& b, const Tensor& c, const GemmArgs& args) override;

  void embedding(const Tensor& weight, const Tensor& ids, const Tensor& out) override;
  void embedding_backward_accumulate(const Tensor& ids, const Tensor& dL_dout, const Tensor& dL_dweight,
                                     bool deterministic) override;

  void layer_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, const Tensor& bias, double eps,
                  const Tensor& y, const Tensor& residual_out, const Tensor& mean, const Tensor& rstd) override;
  void layer_norm_backward(const Tensor& h, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                           const Tensor& dL_dy, const Tensor& dL_dresidual_out, const Tensor& dL_dh,
                           const Tensor& dL_dweight, const Tensor& dL_dbias) override;
  void rms_norm(const Tensor& x, const Tensor& residual, const Tensor& weight, double eps, const Tensor& y,
                const Tensor& residual_out, const Tensor& rstd) override;
  void rms_norm_backward(const Tensor& h, const Tensor& weight, const Tensor& rstd, const Tensor& dL_dy,
                         const Tensor& dL_dresidual_out, const Tensor& dL_dh, const Tensor& dL_dweight) override;

  void softmax(const Tensor& x, const Tensor& y) override;
  void softmax_backward(const Tensor& y, const Tensor& dL_dy, const Tensor& dL_dx) override;
  void cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index, const Tensor& losses) override;
  void cross_entropy_backward(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                              const Tensor& dL_dlosses, const Tensor& dL_dlogits) override;
  void cross_entropy_fused(const Tensor& logits, const Tensor& targets, int64_t ignore_index,
                           const Tensor& dL_dlosses, const Tensor& losses, const Tensor& dL_dlogits) override;

  void adamw(const std::vector<AdamWParam>& params, const AdamWHyper& hyper) override;
  void sum_squares(const std::vector<Tensor>& tensors, const Tensor& out) override;
  void unscale_and_check_finite(const std::vector<Tensor>& tensors, double inv_scale,
                                const Tensor& found_inf) override;

  void attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale, const Tensor& out,
                 const Tensor& lse) override;
  bool attention_takes_strided_qkv() const override { return true; }
  void attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                          const Tensor& dL_dout, bool causal, double scale, const Tensor& dL_dq, const Tensor& dL_dk,
                          const Tensor& dL_dv) override;
  void rope(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse, const Tensor& out) override;

 private:
  int device_;
  CudaStream stream_;
  CudaCachingAllocator allocator_;
  PinnedHostAllocator pinned_;
  std::unique_ptr<CublasLtGemm> gemm_;
  std::unique_ptr<CudnnAttention> attention_;
};

// The backend of GPU `index` (created on first use). Throws if the GPU does not exist.
CudaBackend& cuda_backend(int index);

}  // namespace tessera
