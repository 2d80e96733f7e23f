// NumPy .npy files (format version 1.0) for the cached GPT dataset indices, the same file
// type Megatron-LM caches its indices in, so they can be inspected with numpy.load. Writes
// and reads little-endian int32 and int64 arrays in C order; reading memory-maps the
// file (a document index can hold hundreds of millions of entries). The header is a Python
// dict literal padded with spaces so that the data starts at a multiple of 64 bytes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "data/mapped_file.h"

namespace tessera {

enum class NpyDType { Int32, Int64 };

// Writes `values` with `shape` (whose product must equal values.size()) to `path`, through a
// uniquely named temporary file moved into place, so a reader never sees a partial file.
template <typename T>
void write_npy(const std::string& path, std::span<const T> values, const std::vector<int64_t>& shape);

class NpyArray {
 public:
  explicit NpyArray(const std::string& path);  // throws naming the path if it is not such a file

  NpyDType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t size() const { return size_; }
  int64_t operator[](int64_t flat_index) const;  // element in C order, widened to int64

 private:
  MappedFile file_;
  NpyDType dtype_ = NpyDType::Int64;
  std::vector<int64_t> shape_;
  int64_t size_ = 0;
  const uint8_t* data_ = nullptr;
};

}  // namespace tessera
