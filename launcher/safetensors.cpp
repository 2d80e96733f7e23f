#include "launcher/safetensors.h"

#include <algorithm>
#include <bit>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/check.h"

namespace tessera {
namespace {

// The header length word and every tensor are little-endian: Tessera targets x86-64 and
// aarch64 Linux, both little-endian, so host bytes are file bytes.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

// Larger headers are refused: safetensors itself caps them at 100 MB.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

const std::vector<std::pair<DType, const char*>>& dtype_names() {
  static const std::vector<std::pair<DType, const char*>> names = {
      {DType::F32, "F32"}, {DType::F16, "F16"}, {DType::BF16, "BF16"},
      {DType::F64, "F64"}, {DType::I32, "I32"}, {DType::I64, "I64"}};
  return names;
}

const char* safetensors_dtype(DType dtype) {
  for (const auto& [d, name] : dtype_names())
    if (d == dtype) return name;
  TS_CHECK(false, "safetensors: no safetensors dtype for ", dtype_name(dtype));
  return "";
}

DType dtype_from_safetensors(const std::string& name, const std::string& path, const std::string& tensor) {
  for (const auto& [d, n] : dtype_names())
    if (name == n) return d;
  TS_CHECK(false, path, ": tensor ", tensor, " has dtype ", name,
           ", which Tessera does not read (F32, F16, BF16, F64, I32, I64)");
  return DType::F32;
}

uint64_t tensor_bytes(const Tensor& t) { return uint64_t(t.numel()) * dtype_size(t.dtype()); }

}  // namespace

uint64_t safetensors_data_bytes(const NamedTensors& tensors) {
  uint64_t bytes = 0;
  for (const auto& named : tensors) bytes += tensor_bytes(named.second);
  return bytes;
}

void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    TS_CHECK(!header.contains(name), "safetensors: tensor name ", name, " given twice for ", path);
    const uint64_t bytes = tensor_bytes(tensor);
    header[name] = {{"dtype", safetensors_dtype(tensor.dtype())},
                    {"shape", tensor.shape()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  TS_CHECK(out.good(), "safetensors: cannot create ", path);
  const uint64_t length = text.size();
  out.write(reinterpret_cast<const char*>(&length), sizeof(length));
  out.write(text.data(), std::streamsize(text.size()));
  for (const auto& named : tensors) {
    const Tensor host = named.second.detach().to(Device::cpu()).contiguous();
    out.write(static_cast<const char*>(host.data_ptr()), std::streamsize(tensor_bytes(host)));
  }
  out.flush();
  TS_CHECK(out.good(), "safetensors: writing ", path, " failed (disk full?)");
}

SafetensorsContents read_safetensors(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  TS_CHECK(in.good(), "safetensors: cannot open ", path);
  const uint64_t file_bytes = uint64_t(in.tellg());
  in.seekg(0);
  uint64_t header_bytes = 0;
  TS_CHECK(file_bytes >= 8 && in.read(reinterpret_cast<char*>(&header_bytes), 8),
           path, ": not a safetensors file (shorter than its 8-byte header length)");
  TS_CHECK(header_bytes <= kMaxHeaderBytes && 8 + header_bytes <= file_bytes, path, ": header length ", header_bytes,
           " does not fit the file of ", file_bytes, " bytes (truncated or not safetensors)");
  std::string text(header_bytes, '\0');
  in.read(text.data(), std::streamsize(header_bytes));
  nlohmann::ordered_json header;
  try {
    header = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    TS_CHECK(false, path, ": the header is not valid JSON (", e.what(), ")");
  }
  TS_CHECK(header.is_object(), path, ": the header is not a JSON object");
  const uint64_t data_start = 8 + header_bytes, data_bytes = file_bytes - data_start;

  SafetensorsContents contents;
  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      TS_CHECK(entry.is_object(), path, ": __metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        TS_CHECK(value.is_string(), path, ": __metadata__.", key, " is not a string");
        contents.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    try {
      const DType dtype = dtype_from_safetensors(entry.at("dtype").get<std::string>(), path, name);
      const Shape shape = entry.at("shape").get<Shape>();
      const auto offsets = entry.at("data_offsets").get<std::vector<uint64_t>>();
      TS_CHECK(offsets.size() == 2 && offsets[0] <= offsets[1] && offsets[1] <= data_bytes, path, ": tensor ", name,
               " has data_offsets outside the ", data_bytes, " data bytes (truncated file?)");
      Tensor tensor = Tensor::empty(shape, dtype);
      TS_CHECK(tensor_bytes(tensor) == offsets[1] - offsets[0], path, ": tensor ", name, " of shape ",
               shape_str(shape), " ", dtype_name(dtype), " needs ", tensor_bytes(tensor), " bytes, its data_offsets hold ",
               offsets[1] - offsets[0]);
      spans.push_back({offsets[0], offsets[1], name});
      contents.tensors.emplace_back(name, tensor);
    } catch (const nlohmann::json::exception& e) {
      TS_CHECK(false, path, ": tensor ", name, " has a malformed entry (", e.what(), ")");
    }
  }
  // The data must be exactly the tensors, back to back (what safetensors itself validates).
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  uint64_t expected = 0;
  for (const Span& span : spans) {
    TS_CHECK(span.begin == expected, path, ": tensor ", span.name, " starts at data byte ", span.begin, ", expected ",
             expected, " (overlapping or gapped data_offsets)");
    expected = span.end;
  }
  TS_CHECK(expected == data_bytes, path, ": the tensors hold ", expected, " bytes but the file has ", data_bytes,
           " after the header");
  for (size_t i = 0; i < contents.tensors.size(); ++i) {
    const Tensor& tensor = contents.tensors[i].second;
    const auto& entry = header.at(contents.tensors[i].first);
    in.seekg(std::streamoff(data_start + entry.at("data_offsets")[0].get<uint64_t>()));
    in.read(static_cast<char*>(tensor.data_ptr()), std::streamsize(tensor_bytes(tensor)));
    TS_CHECK(in.good(), path, ": reading tensor ", contents.tensors[i].first, " failed");
  }
  return contents;
}

}  // namespace tessera
