// A compiled PCRE2 pattern (8-bit, JIT when the CPU allows) and a matcher that owns its match
// data, so that a loop over many matches allocates once. Used by the pre-tokenizer and the
// special-token splitter; nothing else in Tessera sees PCRE2.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

struct pcre2_real_code_8;
struct pcre2_real_match_data_8;

namespace tessera {

class Regex {
 public:
  enum class Mode {
    kBytes,    // subjects are any bytes; the pattern matches bytes
    kUnicode,  // UTF + UCP: \p{..} and classes see code points; subjects must be valid UTF-8
  };
  // `what` names the pattern's origin (a file and key) in the error PCRE2's rejection raises.
  Regex(std::string_view pattern, Mode mode, const std::string& what);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  class Matcher {
   public:
    explicit Matcher(const Regex& regex);
    ~Matcher();
    Matcher(const Matcher&) = delete;
    Matcher& operator=(const Matcher&) = delete;
    // Finds the first non-empty match at or after `offset`; false if there is none.
    bool find(std::string_view subject, size_t offset, size_t& start, size_t& end);

   private:
    const Regex& regex_;
    pcre2_real_match_data_8* data_;
  };

 private:
  pcre2_real_code_8* code_ = nullptr;
  bool jit_ = false;  // JIT-compiled: matched by pcre2_jit_match, which skips pcre2_match's checks
  Mode mode_;
  std::string what_;
};

}  // namespace tessera
