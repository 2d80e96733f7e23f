#include "launcher/gguf_writer.h"

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>

#include "core/check.h"
#include "core/dtype.h"
#include "core/half.h"

namespace tessera {
namespace {

static_assert(std::endian::native == std::endian::little, "GGUF is little-endian; so must the host be");

// GGUF metadata value types.
enum GgufType : uint32_t { kUint32 = 4, kInt32 = 5, kFloat32 = 6, kBool = 7, kString = 8, kArray = 9 };
constexpr uint32_t kGgufVersion = 3;

class Out {
 public:
  explicit Out(const std::string& path) : path_(path), file_(path, std::ios::binary | std::ios::trunc) {
    TS_CHECK(file_.good(), "gguf: cannot create ", path);
  }
  template <typename T>
  void pod(T value) {
    bytes(&value, sizeof(T));
  }
  void string(const std::string& s) {
    pod<uint64_t>(s.size());
    bytes(s.data(), s.size());
  }
  void bytes(const void* data, size_t n) {
    file_.write(static_cast<const char*>(data), std::streamsize(n));
    position_ += n;
  }
  void pad() {
    static const char zeros[kGgufAlignment] = {};
    bytes(zeros, (kGgufAlignment - position_ % kGgufAlignment) % kGgufAlignment);
  }
  void finish() {
    file_.flush();
    TS_CHECK(file_.good(), "gguf: writing ", path_, " failed (disk full?)");
  }

 private:
  std::string path_;
  std::ofstream file_;
  uint64_t position_ = 0;
};

uint64_t align(uint64_t n) { return (n + kGgufAlignment - 1) / kGgufAlignment * kGgufAlignment; }

// Row length (ggml's ne0) and row count of a 1-D or 2-D tensor.
std::pair<int64_t, int64_t> row_shape(const Tensor& t) {
  return t.dim() == 1 ? std::pair{t.size(0), int64_t(1)} : std::pair{t.size(1), t.size(0)};
}

std::vector<uint8_t> encode(const Tensor& value, GgmlType type) {
  const auto [cols, rows] = row_shape(value);
  std::vector<uint8_t> out(ggml_bytes(type, cols * rows));
  if (type == GgmlType::Q8_0) {
    const float* values = value.data<float>();
    const uint64_t row_bytes = ggml_bytes(type, cols);
    for (int64_t r = 0; r < rows; ++r) quantize_row_q8_0(values + r * cols, cols, out.data() + r * row_bytes);
    return out;
  }
  const DType dtype = type == GgmlType::F32 ? DType::F32 : type == GgmlType::F16 ? DType::F16 : DType::BF16;
  const Tensor converted = value.to(dtype).contiguous();
  std::memcpy(out.data(), converted.data_ptr(), out.size());
  return out;
}

}  // namespace

uint64_t ggml_bytes(GgmlType type, int64_t count) {
  switch (type) {
    case GgmlType::F32:
      return uint64_t(count) * 4;
    case GgmlType::F16:
    case GgmlType::BF16:
      return uint64_t(count) * 2;
    case GgmlType::Q8_0:
      TS_CHECK(count % kQ8BlockSize == 0, "gguf: q8_0 needs a multiple of 32 values, got ", count);
      return uint64_t(count / kQ8BlockSize) * (2 + kQ8BlockSize);
  }
  TS_CHECK(false, "gguf: unknown ggml type ", uint32_t(type));
  return 0;
}

void quantize_row_q8_0(const float* values, int64_t n, uint8_t* out) {
  TS_CHECK(n % kQ8BlockSize == 0, "gguf: q8_0 needs a multiple of 32 values, got ", n);
  for (int64_t b = 0; b < n / kQ8BlockSize; ++b) {
    const float* x = values + b * kQ8BlockSize;
    float amax = 0.0f;
    for (int64_t i = 0; i < kQ8BlockSize; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint8_t* block = out + b * (2 + kQ8BlockSize);
    const Half scale(d);
    std::memcpy(block, &scale, 2);
    for (int64_t i = 0; i < kQ8BlockSize; ++i) block[2 + i] = uint8_t(int8_t(std::round(x[i] * id)));
  }
}

void GgufWriter::add(const std::string& key, Value value) {
  for (const auto& entry : metadata_) TS_CHECK(entry.first != key, "gguf: metadata key ", key, " given twice");
  metadata_.emplace_back(key, std::move(value));
}
void GgufWriter::add_uint32(const std::string& key, uint32_t value) { add(key, value); }
void GgufWriter::add_float32(const std::string& key, float value) { add(key, value); }
void GgufWriter::add_bool(const std::string& key, bool value) { add(key, value); }
void GgufWriter::add_string(const std::string& key, const std::string& value) { add(key, value); }
void GgufWriter::add_string_array(const std::string& key, const std::vector<std::string>& values) { add(key, values); }
void GgufWriter::add_int32_array(const std::string& key, const std::vector<int32_t>& values) { add(key, values); }

void GgufWriter::add_tensor(const std::string& name, const Tensor& value, GgmlType type) {
  TS_CHECK(value.dtype() == DType::F32 && value.device().is_cpu() && (value.dim() == 1 || value.dim() == 2),
           "gguf: tensor ", name, " must be a host f32 tensor of 1 or 2 dims, got ", value);
  TS_CHECK(type != GgmlType::Q8_0 || row_shape(value).first % kQ8BlockSize == 0, "gguf: tensor ", name,
           " has rows of ", row_shape(value).first, " values; q8_0 needs a multiple of 32");
  for (const PendingTensor& t : tensors_) TS_CHECK(t.name != name, "gguf: tensor ", name, " given twice");
  tensors_.push_back({name, value.contiguous(), type});
}

uint64_t GgufWriter::tensor_data_bytes() const {
  uint64_t bytes = 0;
  for (const PendingTensor& t : tensors_) bytes += align(ggml_bytes(t.type, t.value.numel()));
  return bytes;
}

void GgufWriter::write(const std::string& path, const std::function<void(uint64_t)>& progress) const {
  Out out(path);
  out.bytes("GGUF", 4);
  out.pod<uint32_t>(kGgufVersion);
  out.pod<uint64_t>(tensors_.size());
  out.pod<uint64_t>(metadata_.size());
  for (const auto& [key, value] : metadata_) {
    out.string(key);
    std::visit(
        [&](const auto& v) {
          using V = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<V, uint32_t>) {
            out.pod<uint32_t>(kUint32), out.pod(v);
          } else if constexpr (std::is_same_v<V, float>) {
            out.pod<uint32_t>(kFloat32), out.pod(v);
          } else if constexpr (std::is_same_v<V, bool>) {
            out.pod<uint32_t>(kBool), out.pod<uint8_t>(v ? 1 : 0);
          } else if constexpr (std::is_same_v<V, std::string>) {
            out.pod<uint32_t>(kString), out.string(v);
          } else if constexpr (std::is_same_v<V, std::vector<std::string>>) {
            out.pod<uint32_t>(kArray), out.pod<uint32_t>(kString), out.pod<uint64_t>(v.size());
            for (const std::string& s : v) out.string(s);
          } else {
            out.pod<uint32_t>(kArray), out.pod<uint32_t>(kInt32), out.pod<uint64_t>(v.size());
            out.bytes(v.data(), v.size() * sizeof(int32_t));
          }
        },
        value);
  }
  uint64_t offset = 0;
  for (const PendingTensor& t : tensors_) {
    out.string(t.name);
    const auto [cols, rows] = row_shape(t.value);
    out.pod<uint32_t>(uint32_t(t.value.dim()));
    out.pod<uint64_t>(uint64_t(cols));
    if (t.value.dim() == 2) out.pod<uint64_t>(uint64_t(rows));
    out.pod<uint32_t>(uint32_t(t.type));
    out.pod<uint64_t>(offset);
    offset += align(ggml_bytes(t.type, t.value.numel()));
  }
  out.pad();
  uint64_t written = 0;
  for (const PendingTensor& t : tensors_) {
    const std::vector<uint8_t> data = encode(t.value, t.type);
    out.bytes(data.data(), data.size());
    out.pad();
    written += align(data.size());
    if (progress) progress(written);
  }
  out.finish();
}

}  // namespace tessera
