// Runtime checks for Tessera. Every user-visible failure goes through TS_CHECK (host and .cu
// files alike: this header needs nothing but the standard library) and throws tessera::Error
// with the failing expression, file:line and a message built from streamed pieces:
//   TS_CHECK(a.dim() == 2, "matmul: expected a 2-D tensor, got shape ", a.shape());
// Never assert() for a runtime condition. CUDA/cuBLAS/NCCL/MPI checks are generated from
// TS_CHECK_CALL in their own headers so that the message names the call that failed.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>
#include <cstdint>

namespace tessera {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

template <typename T>
void append_part(std::ostream& os, const T& part) {
  os << part;
}

// Shapes (std::vector<int64_t>) print as [2, 3]; ADL cannot find an operator<< for a std type.
inline void append_part(std::ostream& os, const std::vector<int64_t>& shape) {
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
}

template <typename... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  (append_part(os, parts), ...);
  return os.str();
}

[[noreturn]] void throw_error(const char* expr, const char* file, int line, const std::string& message);

}  // namespace detail
}  // namespace tessera

#define TS_CHECK(cond, ...)                                                                       \
  do {                                                                                            \
    if (!(cond)) {                                                                                \
      ::tessera::detail::throw_error(#cond, __FILE__, __LINE__, ::tessera::detail::concat(__VA_ARGS__)); \
    }                                                                                             \
  } while (0)

// Generates a check for a library call that returns a status code: `ok` tells whether the
// status means success, `describe` turns it into a string for the message.
#define TS_CHECK_CALL(call, status_type, ok, describe)                                            \
  do {                                                                                            \
    status_type ts_status_ = (call);                                                              \
    if (!(ok(ts_status_))) {                                                                      \
      ::tessera::detail::throw_error(#call, __FILE__, __LINE__,                                   \
                                     ::tessera::detail::concat("call failed: ", describe(ts_status_))); \
    }                                                                                             \
  } while (0)
