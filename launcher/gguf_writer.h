// A GGUF (version 3) file writer, the format llama.cpp loads:
//   "GGUF" magic, u32 version 3, u64 tensor count, u64 metadata count;
//   metadata: key (u64 length + bytes), u32 value type, value (arrays: u32 element type,
//     u64 count, elements);
//   tensor infos: name, u32 dims, u64 extents in ggml's order (fastest-varying first, so a
//     row-major [rows, cols] matrix is {cols, rows}), u32 ggml type, u64 offset into the data;
//   zero padding to the alignment (32), then each tensor's data, each padded to the alignment,
//   in the order the infos declare them.
// Tensors are encoded while the file is written (from host f32 tensors): f32, f16 and bf16
// round to nearest even; q8_0 is ggml's reference quantization (blocks of 32 along the row,
// an f16 scale amax / 127 and 32 int8 values rounded half away from zero).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <variant>
#include <vector>

#include "core/tensor.h"

namespace tessera {

enum class GgmlType : uint32_t { F32 = 0, F16 = 1, Q8_0 = 8, BF16 = 30 };

inline constexpr int64_t kGgufAlignment = 32;
inline constexpr int64_t kQ8BlockSize = 32;  // values per q8_0 block (34 bytes: f16 scale + 32 int8)

// Bytes of `count` values of `type` (count a multiple of 32 for q8_0).
uint64_t ggml_bytes(GgmlType type, int64_t count);
// One row of f32 values as q8_0 blocks (n a multiple of 32); out holds ggml_bytes(Q8_0, n).
void quantize_row_q8_0(const float* values, int64_t n, uint8_t* out);

class GgufWriter {
 public:
  void add_uint32(const std::string& key, uint32_t value);
  void add_float32(const std::string& key, float value);
  void add_bool(const std::string& key, bool value);
  void add_string(const std::string& key, const std::string& value);
  void add_string_array(const std::string& key, const std::vector<std::string>& values);
  void add_int32_array(const std::string& key, const std::vector<int32_t>& values);
  // A host f32 tensor of 1 or 2 dims, stored as `type` (q8_0 needs a row length divisible by 32).
  void add_tensor(const std::string& name, const Tensor& value, GgmlType type);

  uint64_t tensor_data_bytes() const;
  // Writes the file; `progress` hears the tensor bytes written so far after each tensor.
  void write(const std::string& path, const std::function<void(uint64_t written)>& progress = {}) const;

 private:
  using Value = std::variant<uint32_t, float, bool, std::string, std::vector<std::string>, std::vector<int32_t>>;
  struct PendingTensor {
    std::string name;
    Tensor value;
    GgmlType type;
  };
  void add(const std::string& key, Value value);

  std::vector<std::pair<std::string, Value>> metadata_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace tessera
