#include "data/binary_file.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "core/check.h"

namespace tessera {

BinaryFileWriter::BinaryFileWriter(std::string path) : path_(std::move(path)) {
  file_ = std::fopen(path_.c_str(), "wb");
  TS_CHECK(file_ != nullptr, "cannot create ", path_, ": ", std::strerror(errno),
           " (check that its folder exists and is writable)");
  std::setvbuf(file_, nullptr, _IOFBF, 1 << 20);
}

BinaryFileWriter::~BinaryFileWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

void BinaryFileWriter::write(const void* bytes, size_t count) {
  TS_CHECK(file_ != nullptr, "write to ", path_, " after close()");
  if (count == 0) return;
  size_t written = std::fwrite(bytes, 1, count, file_);
  TS_CHECK(written == count, "writing ", count, " bytes to ", path_, " failed: ", std::strerror(errno),
           " (is the disk full?)");
  bytes_written_ += static_cast<int64_t>(count);
}

void BinaryFileWriter::close() {
  TS_CHECK(file_ != nullptr, path_, " closed twice");
  bool flushed = std::fflush(file_) == 0;
  int flush_error = errno;
  bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  TS_CHECK(flushed && closed, "finishing ", path_, " failed: ", std::strerror(flush_error), " (is the disk full?)");
}

std::string unique_temporary_path(const std::string& path) {
  static std::atomic<uint64_t> counter{0};
  return path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

void commit_file_atomically(const std::string& from, const std::string& to) {
  TS_CHECK(std::rename(from.c_str(), to.c_str()) == 0, "cannot move ", from, " to ", to, ": ", std::strerror(errno));
}

void remove_file_quietly(const std::string& path) { std::remove(path.c_str()); }

}  // namespace tessera
