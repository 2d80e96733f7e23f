// Strict UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), the
// same definition PCRE2, Rust and Python use. The tokenizer cuts text into maximal valid runs
// and maximal runs of bytes that start no valid sequence (bpe_utf8 "invalid runs"): a byte
// that cannot start a valid sequence at its position is invalid, and the scan moves on by one.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace tessera {

// Appends the UTF-8 encoding of `code_point` (which must be a valid scalar value).
void append_utf8(std::string& out, char32_t code_point);

// Decodes the sequence at `offset` and moves `offset` past it; nullopt (offset unchanged) if
// no valid sequence starts there.
std::optional<char32_t> decode_utf8(std::string_view text, size_t& offset);

// Length of the longest valid UTF-8 prefix of `text`.
size_t valid_utf8_prefix_length(std::string_view text);

// Length of the run of invalid bytes at the start of `text` (0 if it starts validly).
size_t invalid_utf8_prefix_length(std::string_view text);

// Length of `text` without a trailing lead byte and the continuation bytes after it when they
// are fewer than the lead byte announces: a sequence that more text could still complete.
size_t utf8_length_without_open_tail(std::string_view text);

}  // namespace tessera
