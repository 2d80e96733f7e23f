#include "data/npy_array.h"

#include <cstring>
#include <string_view>

#include "core/check.h"
#include "data/binary_file.h"

namespace tessera {
namespace {

constexpr std::string_view kMagic{"\x93NUMPY", 6};
constexpr size_t kPreambleBytes = 10;  // magic, version 1.0, u16 header length
constexpr size_t kAlignment = 64;

template <typename T>
constexpr const char* descr_of();
template <>
constexpr const char* descr_of<int32_t>() {
  return "<i4";
}
template <>
constexpr const char* descr_of<int64_t>() {
  return "<i8";
}

std::string shape_literal(const std::vector<int64_t>& shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + (shape.size() == 1 ? ",)" : ")");
}

// The value text after `'key': ` in the header dict.
std::string_view header_value(std::string_view header, std::string_view key, const std::string& path) {
  std::string quoted(1, '\'');
  quoted.append(key).append("':");
  size_t at = header.find(quoted);
  TS_CHECK(at != std::string_view::npos, path, ": the .npy header has no '", key, "' entry");
  std::string_view rest = header.substr(at + quoted.size());
  return rest.substr(rest.find_first_not_of(' '));
}

std::vector<int64_t> parse_shape(std::string_view text, const std::string& path) {
  TS_CHECK(!text.empty() && text.front() == '(', path, ": cannot read the .npy shape");
  std::vector<int64_t> shape;
  size_t i = 1;
  while (i < text.size() && text[i] != ')') {
    if (text[i] == ',' || text[i] == ' ') {
      ++i;
      continue;
    }
    TS_CHECK(text[i] >= '0' && text[i] <= '9', path, ": cannot read the .npy shape ", text.substr(0, 40));
    int64_t dimension = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') dimension = dimension * 10 + (text[i++] - '0');
    shape.push_back(dimension);
  }
  return shape;
}

}  // namespace

template <typename T>
void write_npy(const std::string& path, std::span<const T> values, const std::vector<int64_t>& shape) {
  int64_t count = 1;
  for (int64_t dimension : shape) count *= dimension;
  TS_CHECK(count == static_cast<int64_t>(values.size()), "write_npy ", path, ": ", values.size(),
           " values do not fill shape ", shape_literal(shape));
  std::string header = std::string("{'descr': '") + descr_of<T>() +
                       "', 'fortran_order': False, 'shape': " + shape_literal(shape) + ", }";
  size_t padded = (kPreambleBytes + header.size() + 1 + kAlignment - 1) / kAlignment * kAlignment;
  header.append(padded - kPreambleBytes - header.size() - 1, ' ');
  header += '\n';
  const std::string temporary = unique_temporary_path(path);
  {
    BinaryFileWriter file(temporary);
    file.write(kMagic.data(), kMagic.size());
    file.write_value<uint8_t>(1);
    file.write_value<uint8_t>(0);
    file.write_value<uint16_t>(static_cast<uint16_t>(header.size()));
    file.write(header.data(), header.size());
    file.write_values<T>(values);
    file.close();
  }
  commit_file_atomically(temporary, path);
}

template void write_npy<int32_t>(const std::string&, std::span<const int32_t>, const std::vector<int64_t>&);
template void write_npy<int64_t>(const std::string&, std::span<const int64_t>, const std::vector<int64_t>&);

NpyArray::NpyArray(const std::string& path) : file_(path) {
  const uint8_t* bytes = file_.data();
  TS_CHECK(file_.size() >= kPreambleBytes && std::memcmp(bytes, kMagic.data(), kMagic.size()) == 0 && bytes[6] == 1,
           path, " is not a version-1 .npy file");
  uint16_t header_bytes;
  std::memcpy(&header_bytes, bytes + 8, 2);
  TS_CHECK(kPreambleBytes + header_bytes <= file_.size(), path, ": the .npy header runs past the end of the file");
  std::string_view header(reinterpret_cast<const char*>(bytes + kPreambleBytes), header_bytes);
  std::string_view descr = header_value(header, "descr", path);
  int64_t item = 0;
  if (descr.starts_with("'<i4'")) {
    dtype_ = NpyDType::Int32;
    item = 4;
  } else if (descr.starts_with("'<i8'")) {
    dtype_ = NpyDType::Int64;
    item = 8;
  }
  TS_CHECK(item > 0, path, ": .npy dtype ", descr.substr(0, descr.find(',')), " is not one of <i4, <i8");
  TS_CHECK(header_value(header, "fortran_order", path).starts_with("False"), path,
           ": Fortran-ordered .npy arrays are not supported");
  shape_ = parse_shape(header_value(header, "shape", path), path);
  size_ = 1;
  for (int64_t dimension : shape_) size_ *= dimension;
  const size_t data_offset = kPreambleBytes + header_bytes;
  TS_CHECK(file_.size() == data_offset + static_cast<size_t>(size_ * item), path, ": the .npy file is ", file_.size(),
           " bytes but its header describes ", data_offset + size_ * item, " (truncated?)");
  data_ = bytes + data_offset;
}

int64_t NpyArray::operator[](int64_t flat_index) const {
  TS_CHECK(flat_index >= 0 && flat_index < size_, file_.path(), ": index ", flat_index, " out of range [0, ", size_,
           ")");
  switch (dtype_) {
    case NpyDType::Int32: {
      int32_t value;
      std::memcpy(&value, data_ + 4 * flat_index, 4);
      return value;
    }
    case NpyDType::Int64:
      break;
  }
  int64_t value;
  std::memcpy(&value, data_ + 8 * flat_index, 8);
  return value;
}

}  // namespace tessera
