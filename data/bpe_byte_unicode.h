// GPT-2's byte-to-unicode alphabet: vocabulary files (encoder.json, vocab.bpe, vocab.json,
// merges.txt, Hugging Face ByteLevel tokenizer.json) write each token's bytes as printable
// characters. Bytes 33-126, 161-172 and 174-255 stand for themselves; the other 68 bytes map,
// in increasing order, to U+0100, U+0101, ... (so space 0x20 is U+0120 'Ġ', '\n' is U+010A 'Ċ').
// In memory Tessera keeps tokens as raw bytes; these functions convert at the file boundary.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tessera {

// The code point that stands for `byte` in vocabulary files.
char32_t byte_to_unicode(unsigned char byte);

// The UTF-8 spelling of raw bytes in the byte-to-unicode alphabet ("Ġthe" for " the").
std::string bytes_to_unicode_text(std::string_view bytes);

// The raw bytes spelled by a UTF-8 string in the byte-to-unicode alphabet; nullopt if the
// string is not valid UTF-8 or holds a character outside the alphabet.
std::optional<std::string> unicode_text_to_bytes(std::string_view text);

}  // namespace tessera
