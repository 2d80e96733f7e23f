#include "data/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/check.h"

namespace tessera {

MappedFile::MappedFile(std::string path) : path_(std::move(path)) {
  int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  TS_CHECK(fd >= 0, "cannot open ", path_, ": ", std::strerror(errno));
  struct stat info {};
  bool stat_ok = ::fstat(fd, &info) == 0;
  int stat_error = errno;
  if (!stat_ok || !S_ISREG(info.st_mode)) ::close(fd);
  TS_CHECK(stat_ok, "cannot stat ", path_, ": ", std::strerror(stat_error));
  TS_CHECK(S_ISREG(info.st_mode), path_, " is not a regular file");
  size_ = static_cast<size_t>(info.st_size);
  if (size_ > 0) {
    void* mapped = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    int error = errno;
    ::close(fd);
    TS_CHECK(mapped != MAP_FAILED, "cannot memory-map ", path_, " (", size_, " bytes): ", std::strerror(error));
    data_ = static_cast<const uint8_t*>(mapped);
  } else {
    ::close(fd);
  }
}

MappedFile::~MappedFile() {
  if (data_ != nullptr && ::munmap(const_cast<uint8_t*>(data_), size_) != 0) {
    std::fprintf(stderr, "tessera: munmap of %s failed: %s\n", path_.c_str(), std::strerror(errno));
  }
}

}  // namespace tessera
