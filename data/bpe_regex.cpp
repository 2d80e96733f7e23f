#include "data/bpe_regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/check.h"

namespace tessera {
namespace {

std::string pcre2_message(int error_code) {
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(error_code, buffer, sizeof(buffer));
  return reinterpret_cast<const char*>(buffer);
}

}  // namespace

Regex::Regex(std::string_view pattern, Mode mode, const std::string& what) : mode_(mode), what_(what) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  uint32_t options = mode == Mode::kUnicode ? PCRE2_UTF | PCRE2_UCP : 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &error_code,
                        &error_offset, nullptr);
  TS_CHECK(code_ != nullptr, what, ": the regex does not compile (PCRE2: ", pcre2_message(error_code), " at offset ",
           error_offset, " of '", pattern, "')");
  // Without JIT (an unsupported CPU) pcre2_match interprets the pattern: slower, same matches.
  jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() { pcre2_code_free(code_); }

Regex::Matcher::Matcher(const Regex& regex) : regex_(regex), data_(pcre2_match_data_create(1, nullptr)) {
  TS_CHECK(data_ != nullptr, regex.what_, ": out of memory for PCRE2 match data");
}

Regex::Matcher::~Matcher() { pcre2_match_data_free(data_); }

bool Regex::Matcher::find(std::string_view subject, size_t offset, size_t& start, size_t& end) {
  uint32_t options = PCRE2_NOTEMPTY | (regex_.mode_ == Mode::kUnicode ? PCRE2_NO_UTF_CHECK : 0);
  auto match = regex_.jit_ ? pcre2_jit_match : pcre2_match;
  int rc = match(regex_.code_, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), offset, options, data_,
                 nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  TS_CHECK(rc > 0, regex_.what_, ": PCRE2 failed on a text of ", subject.size(), " bytes at offset ", offset, ": ",
           pcre2_message(rc));
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data_);
  start = ovector[0];
  end = ovector[1];
  return true;
}

}  // namespace tessera
