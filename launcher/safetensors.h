// Hugging Face safetensors files: an 8-byte little-endian header length N, N bytes of JSON
// {name: {"dtype", "shape", "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}}
// (padded with spaces to a multiple of 8), then the tensors' bytes, row-major, back to back in
// header order; offsets count from the end of the header.
// The writer takes tensors on any device and writes each in its own dtype (F32, F16, BF16,
// F64, I32, I64). The reader returns host tensors in the file's dtypes, in header order, and
// refuses a file whose header is malformed, whose offsets overlap, leave gaps or run past the
// end, or whose byte count disagrees with a shape, naming the file and the tensor.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace tessera {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Bytes the tensors take in a file (their data only, without the header).
uint64_t safetensors_data_bytes(const NamedTensors& tensors);

// Writes `tensors` (names unique) to `path`, replacing it.
void write_safetensors(const std::string& path, const NamedTensors& tensors,
                       const std::map<std::string, std::string>& metadata = {});

struct SafetensorsContents {
  NamedTensors tensors;                         // header order
  std::map<std::string, std::string> metadata;  // __metadata__
};
SafetensorsContents read_safetensors(const std::string& path);

}  // namespace tessera
