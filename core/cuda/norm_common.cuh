// Shared by norm_forward.cu and norm_backward.cu: the dynamic shared memory both kernels use,
// and the host-side argument checks and launch helpers.
#pragma once

#include <algorithm>
#include <initializer_list>

#include "core/cuda/cuda_backend.h"
#include "core/cuda/kernel_utils.cuh"

namespace tessera::norm {

using cuda::acc_t;
using cuda::block_reduce;
using cuda::load;
using cuda::PackedVec;
using cuda::store;
using cuda::SumOp;

extern __shared__ __align__(16) unsigned char norm_smem[];

inline void check_arg(const char* kernel, const char* name, const Tensor& t, DType dtype, const Shape& shape,
               int device) {
  cuda::check_on_device(kernel, name, t, device);
  TS_CHECK(t.dtype() == dtype && t.shape() == shape, kernel, ": expected ", name, " ", dtype_name(dtype), " ",
           shape_str(shape), ", got ", dtype_name(t.dtype()), " ", shape_str(t.shape()));
  TS_CHECK(t.is_contiguous(), kernel, ": ", name, " ", shape_str(t.shape()), " must be contiguous, strides ",
           shape_str(t.strides()));
}

inline void check_rows(const char* kernel, const Tensor& x) {
  TS_CHECK(x.defined() && x.dim() == 2, kernel, ": expected x [R, C], got ",
           x.defined() ? shape_str(x.shape()) : "an undefined tensor");
}

template <typename T>
T* ptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.data_ptr()) : nullptr;
}

// The 16-byte vector path needs C a multiple of the vector and every row pointer aligned.
template <typename T>
bool can_vectorize(int64_t C, std::initializer_list<const void*> pointers) {
  if (C % cuda::kVec16<T> != 0) return false;
  for (const void* p : pointers)
    if (p && !cuda::is_aligned(p, 16)) return false;
  return true;
}

// A thread per vector of the row (a multiple of 32, at most `limit`).
inline int threads_for(int64_t nvec, int limit) {
  return static_cast<int>(std::min<int64_t>(limit, std::max<int64_t>(32, (nvec + 31) / 32 * 32)));
}

// Lets `kernel` use `bytes` of dynamic shared memory (above the 48 KiB default), or throws.
template <typename Kernel>
void allow_shared_memory(Kernel kernel, size_t bytes, int device, const char* name, int64_t C) {
  int optin = 0;
  TS_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const size_t limit = static_cast<size_t>(optin) - 1024;  // room for block_reduce's scratch
  TS_CHECK(bytes <= limit, name, ": rows of C = ", C, " need ", bytes, " bytes of shared memory, more than the ",
           limit, " this GPU gives a block");
  if (bytes > 48 * 1024)
    TS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

}  // namespace tessera::norm
