// A read-only memory map of a whole file (RAII). Indexed datasets (.bin/.idx) and cached
// sample indices (.npy) are read through it, so opening a many-GB dataset costs no memory
// up front and ranks on one node share the page cache. An empty file maps to size 0 and a
// null data pointer. Errors name the path and the system's reason.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tessera {

class MappedFile {
 public:
  explicit MappedFile(std::string path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace tessera
