#include "core/check.h"

namespace tessera::detail {

void throw_error(const char* expr, const char* file, int line, const std::string& message) {
  std::ostringstream os;
  os << message << " [check `" << expr << "` failed at " << file << ":" << line << "]";
  throw Error(os.str());
}

}  // namespace tessera::detail
