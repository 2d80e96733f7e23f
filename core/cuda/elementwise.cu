// PLACEHOLDER (helper-4 replaces this file): elementwise kernels.
#include "core/cuda/cuda_backend.h"
namespace tessera {
void CudaBackend::binary(BinaryOp, const Tensor&, const Tensor&, const Tensor&) { TS_CHECK(false, "binary: not implemented on CUDA yet"); }
void CudaBackend::unary(UnaryOp, const Tensor&, const Tensor&) { TS_CHECK(false, "unary: not implemented on CUDA yet"); }
void CudaBackend::unary_backward(UnaryOp, const Tensor&, const Tensor&, const Tensor&) { TS_CHECK(false, "unary_backward: not implemented on CUDA yet"); }
void CudaBackend::affine(const Tensor&, double, double, const Tensor&) { TS_CHECK(false, "affine: not implemented on CUDA yet"); }
void CudaBackend::pow(const Tensor&, double, const Tensor&) { TS_CHECK(false, "pow: not implemented on CUDA yet"); }
void CudaBackend::axpy(double, const Tensor&, const Tensor&) { TS_CHECK(false, "axpy: not implemented on CUDA yet"); }
void CudaBackend::swiglu(const Tensor&, const Tensor&, const Tensor&) { TS_CHECK(false, "swiglu: not implemented on CUDA yet"); }
void CudaBackend::swiglu_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&) { TS_CHECK(false, "swiglu_backward: not implemented on CUDA yet"); }
}  // namespace tessera
