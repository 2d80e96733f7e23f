#include "data/bpe_byte_unicode.h"

#include <array>

#include "data/bpe_utf8.h"

namespace tessera {
namespace {

bool stands_for_itself(unsigned byte) {
  return (byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || (byte >= 174 && byte <= 255);
}

struct ByteUnicodeTables {
  std::array<char32_t, 256> to_unicode{};
  std::array<int, 512> to_byte{};  // code point (all are < 512) -> byte, -1 if none

  ByteUnicodeTables() {
    to_byte.fill(-1);
    unsigned next_shifted = 0;
    for (unsigned byte = 0; byte < 256; ++byte) {
      char32_t code_point = stands_for_itself(byte) ? byte : 256 + next_shifted++;
      to_unicode[byte] = code_point;
      to_byte[code_point] = static_cast<int>(byte);
    }
  }
};

const ByteUnicodeTables& tables() {
  static const ByteUnicodeTables instance;
  return instance;
}

}  // namespace

char32_t byte_to_unicode(unsigned char byte) { return tables().to_unicode[byte]; }

std::string bytes_to_unicode_text(std::string_view bytes) {
  std::string text;
  text.reserve(bytes.size() * 2);
  for (char byte : bytes) append_utf8(text, byte_to_unicode(static_cast<unsigned char>(byte)));
  return text;
}

std::optional<std::string> unicode_text_to_bytes(std::string_view text) {
  std::string bytes;
  bytes.reserve(text.size());
  size_t offset = 0;
  while (offset < text.size()) {
    std::optional<char32_t> code_point = decode_utf8(text, offset);
    if (!code_point || *code_point >= tables().to_byte.size() || tables().to_byte[*code_point] < 0) {
      return std::nullopt;
    }
    bytes.push_back(static_cast<char>(tables().to_byte[*code_point]));
  }
  return bytes;
}

}  // namespace tessera
