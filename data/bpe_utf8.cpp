#include "data/bpe_utf8.h"

#include <cstdint>
#include <cstring>

namespace tessera {

void append_utf8(std::string& out, char32_t code_point) {
  if (code_point < 0x80) {
    out.push_back(static_cast<char>(code_point));
  } else if (code_point < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else if (code_point < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (code_point >> 12)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (code_point >> 18)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
}

std::optional<char32_t> decode_utf8(std::string_view text, size_t& offset) {
  auto byte_at = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  unsigned lead = byte_at(offset);
  if (lead < 0x80) {
    ++offset;
    return lead;
  }
  size_t length;
  char32_t code_point;
  char32_t smallest;  // below it the form is overlong
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2, code_point = lead & 0x1F, smallest = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3, code_point = lead & 0x0F, smallest = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4, code_point = lead & 0x07, smallest = 0x10000;
  } else {
    return std::nullopt;
  }
  if (offset + length > text.size()) return std::nullopt;
  for (size_t i = 1; i < length; ++i) {
    unsigned continuation = byte_at(offset + i);
    if ((continuation & 0xC0) != 0x80) return std::nullopt;
    code_point = (code_point << 6) | (continuation & 0x3F);
  }
  if (code_point < smallest || code_point > 0x10FFFF || (code_point >= 0xD800 && code_point <= 0xDFFF)) {
    return std::nullopt;
  }
  offset += length;
  return code_point;
}

size_t valid_utf8_prefix_length(std::string_view text) {
  size_t offset = 0;
  while (offset < text.size()) {
    // ASCII fast path: eight bytes at a time while none has its high bit set.
    uint64_t word;
    while (offset + sizeof(word) <= text.size()) {
      std::memcpy(&word, text.data() + offset, sizeof(word));
      if (word & 0x8080808080808080ull) break;
      offset += sizeof(word);
    }
    if (offset >= text.size()) break;
    if (!decode_utf8(text, offset)) break;
  }
  return offset;
}

size_t invalid_utf8_prefix_length(std::string_view text) {
  size_t length = 0;
  while (length < text.size()) {
    size_t probe = length;
    if (decode_utf8(text, probe)) break;
    ++length;
  }
  return length;
}

size_t utf8_length_without_open_tail(std::string_view text) {
  for (size_t tail = 1; tail <= 3 && tail <= text.size(); ++tail) {
    unsigned byte = static_cast<unsigned char>(text[text.size() - tail]);
    if ((byte & 0xC0) == 0x80) continue;  // a continuation byte: look further back for the lead
    size_t announced = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1;
    return announced > tail ? text.size() - tail : text.size();
  }
  return text.size();
}

}  // namespace tessera
