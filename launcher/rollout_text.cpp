#include "launcher/rollout_text.h"

#include "core/check.h"

namespace tessera {

std::string decode_response(const Tokenizer& tokenizer, std::span<const int32_t> ids) {
  try {
    return tokenizer.decode(ids);
  } catch (const Error&) {
    std::string text;
    for (int32_t id : ids) {
      try {
        text += tokenizer.decode(std::span<const int32_t>(&id, 1));
      } catch (const Error&) {
        text += "\xEF\xBF\xBD";
      }
    }
    return text;
  }
}

}  // namespace tessera
