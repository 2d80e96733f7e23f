#include "data/tokenizer.h"

#include <algorithm>

#include "core/check.h"
#include "data/bpe_byte_unicode.h"
#include "data/bpe_pretokenizer.h"
#include "data/tokenizer_files.h"
#include "data/tokenizer_special_tokens.h"

namespace tessera {

Tokenizer::Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::filesystem::path& path, const std::string& eod_token) {
  Tokenizer tokenizer = from_spec(read_tokenizer_files(path));
  if (!eod_token.empty()) tokenizer.set_eod_token(eod_token);
  return tokenizer;
}

Tokenizer Tokenizer::load(const std::filesystem::path& vocab, const std::filesystem::path& merges,
                          const std::string& eod_token) {
  Tokenizer tokenizer = from_spec(read_gpt2_tokenizer_files(vocab, merges));
  if (!eod_token.empty()) tokenizer.set_eod_token(eod_token);
  return tokenizer;
}

Tokenizer Tokenizer::from_spec(const TokenizerSpec& spec) {
  Tokenizer tokenizer;
  tokenizer.vocab_ = spec.vocab;
  for (const auto& [bytes, id] : spec.vocab) tokenizer.set_id_bytes(id, bytes, spec.source);
  for (const auto& [text, id] : spec.special_tokens) tokenizer.set_id_bytes(id, text, spec.source);
  tokenizer.model_ = std::make_unique<BpeModel>(spec.vocab, spec.merges, spec.ignore_merges, spec.source);
  tokenizer.pretokenizer_ = std::make_unique<Pretokenizer>(spec.pattern, spec.source + " (pre-tokenization regex)");
  tokenizer.specials_ = std::make_unique<SpecialTokenSplitter>(spec.special_tokens);
  tokenizer.pick_default_eod();
  return tokenizer;
}

void Tokenizer::set_id_bytes(int32_t id, const std::string& bytes, const std::string& source) {
  TS_CHECK(id >= 0, source, ": token '", bytes_to_unicode_text(bytes), "' has negative id ", id);
  size_t index = static_cast<size_t>(id);
  if (index >= id_bytes_.size()) {
    id_bytes_.resize(index + 1);
    id_known_.resize(index + 1, 0);
  }
  TS_CHECK(!id_known_[index] || id_bytes_[index] == bytes, source, ": id ", id, " is given to both '",
           bytes_to_unicode_text(id_bytes_[index]), "' and '", bytes_to_unicode_text(bytes), "'");
  id_bytes_[index] = bytes;
  id_known_[index] = 1;
}

void Tokenizer::set_eod_token(std::string_view token) {
  int32_t id = token_id(token);
  TS_CHECK(id >= 0, "end-of-document token '", token, "' is not in the tokenizer's vocabulary");
  eod_id_ = id;
}

void Tokenizer::pick_default_eod() {
  for (const char* candidate : {"<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>"}) {
    if (int32_t id = specials_->find(candidate); id >= 0) {
      eod_id_ = id;
      return;
    }
  }
}

void Tokenizer::add_special_tokens(const std::vector<std::string>& tokens) {
  std::vector<std::pair<std::string, int32_t>> all = specials_->tokens();
  for (const std::string& token : tokens) {
    bool known = std::any_of(all.begin(), all.end(), [&](const auto& special) { return special.first == token; });
    if (known) continue;
    auto ordinary = vocab_.find(token);
    int32_t id = ordinary != vocab_.end() ? ordinary->second : vocab_size();
    set_id_bytes(id, token, "add_special_tokens");
    all.emplace_back(token, id);
  }
  specials_ = std::make_unique<SpecialTokenSplitter>(std::move(all));
  if (eod_id_ < 0) pick_default_eod();
}

void Tokenizer::encode_ordinary(std::string_view text, std::vector<int32_t>& ids) const {
  BpeModel::Scratch scratch;
  pretokenizer_->split(text, [&](std::string_view piece) { model_->encode_piece(piece, ids, scratch); });
}

void Tokenizer::encode_append(std::string_view text, std::vector<int32_t>& ids, SpecialTokens specials) const {
  if (specials == SpecialTokens::kAsText) {
    encode_ordinary(text, ids);
    return;
  }
  specials_->split(
      text, [&](std::string_view ordinary) { encode_ordinary(ordinary, ids); }, [&](int32_t id) { ids.push_back(id); });
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, SpecialTokens specials) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3);
  encode_append(text, ids, specials);
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string text;
  for (int32_t id : ids) text += token_bytes(id);
  return text;
}

std::string_view Tokenizer::token_bytes(int32_t id) const {
  TS_CHECK(id >= 0 && id < vocab_size() && id_known_[static_cast<size_t>(id)], "decode: id ", id,
           " is not a token of this tokenizer (vocabulary size ", vocab_size(), ")");
  return id_bytes_[static_cast<size_t>(id)];
}

int32_t Tokenizer::token_id(std::string_view token) const {
  if (int32_t id = specials_->find(token); id >= 0) return id;
  auto found = vocab_.find(token);
  return found == vocab_.end() ? -1 : found->second;
}

const std::string& Tokenizer::pattern() const { return pretokenizer_->pattern(); }

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(id_bytes_.size()); }

int32_t Tokenizer::eod_id() const {
  TS_CHECK(eod_id_ >= 0,
           "this tokenizer has no end-of-document token (none of <|endoftext|>, <|end_of_text|>, "
           "</s>, <eos> is a special token); name one with set_eod_token or add_special_tokens");
  return eod_id_;
}

}  // namespace tessera
