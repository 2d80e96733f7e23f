// TS_CUBLAS_CHECK: checks a cuBLAS / cuBLASLt call and throws tessera::Error naming the call,
// cuBLAS's status name and description, file and line. Host code only (.cpp files).
#pragma once

#include <cublasLt.h>

#include <string>

#include "core/check.h"

namespace tessera::detail {

inline std::string cublas_status_text(cublasStatus_t status) {
  return std::string(cublasLtGetStatusName(status)) + " (" + cublasLtGetStatusString(status) + ")";
}

}  // namespace tessera::detail

#define TS_CUBLAS_OK(status) ((status) == CUBLAS_STATUS_SUCCESS)
#define TS_CUBLAS_CHECK(call) TS_CHECK_CALL(call, cublasStatus_t, TS_CUBLAS_OK, ::tessera::detail::cublas_status_text)
