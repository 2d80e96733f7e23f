// TS_CUDNN_CHECK: checks a cuDNN call and throws tessera::Error naming the call, cuDNN's status
// string and its last error message (cudnnGetLastErrorString, which says which attribute or
// engine refused), file and line. Host (.cpp) files only.
#pragma once

#include <cudnn_graph.h>

#include <string>

#include "core/check.h"

namespace tessera::detail {

// "CUDNN_STATUS_BAD_PARAM (<cuDNN's last error message>)".
inline std::string cudnn_status_message(cudnnStatus_t status) {
  char last[1024] = {};
  cudnnGetLastErrorString(last, sizeof(last));
  std::string message = cudnnGetErrorString(status);
  if (last[0] != '\0') message += std::string(" (") + last + ")";
  return message;
}

}  // namespace tessera::detail

#define TS_CUDNN_OK(status) ((status) == CUDNN_STATUS_SUCCESS)
#define TS_CUDNN_CHECK(call) TS_CHECK_CALL(call, cudnnStatus_t, TS_CUDNN_OK, ::tessera::detail::cudnn_status_message)
