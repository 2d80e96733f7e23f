#include "launcher/export_tokenizer.h"

#include "core/check.h"
#include "data/bpe_byte_unicode.h"
#include "data/tokenizer.h"

namespace tessera {
namespace {

std::filesystem::path tokenizer_json_of(const std::filesystem::path& path) {
  if (std::filesystem::is_directory(path) && std::filesystem::exists(path / "tokenizer.json"))
    return path / "tokenizer.json";
  if (path.extension() == ".json" && path.filename() != "vocab.json" && path.filename() != "encoder.json") return path;
  return {};
}

}  // namespace

std::optional<ExportTokenizer> find_export_tokenizer(const std::string& option, const Recipe& recipe) {
  ExportTokenizer t;
  std::filesystem::path single = option.empty() ? recipe.get_string("data.tokenizer_model") : option;
  const std::string vocab = recipe.get_string("data.vocab_file"), merges = recipe.get_string("data.merge_file");
  if (!single.empty()) {
    TS_CHECK(std::filesystem::exists(single), "export: tokenizer ", single.string(),
             " does not exist (pass --tokenizer PATH: a tokenizer.json or a folder of tokenizer files)");
    t.spec = read_tokenizer_files(single);
    t.tokenizer_json = tokenizer_json_of(single);
  } else if (!vocab.empty() && !merges.empty()) {
    for (const std::string& file : {vocab, merges})
      TS_CHECK(std::filesystem::exists(file), "export: the recipe's tokenizer file ", file,
               " does not exist (pass --tokenizer PATH)");
    t.spec = read_gpt2_tokenizer_files(vocab, merges);
  } else {
    return std::nullopt;
  }
  const Tokenizer tokenizer = Tokenizer::from_spec(t.spec);
  t.vocab_size = tokenizer.vocab_size();
  try {
    t.eos = tokenizer.eod_id();
  } catch (const Error&) {
    t.eos = -1;  // no end-of-text token: configs name none
  }
  const int32_t begin = tokenizer.token_id("<|begin_of_text|>");
  t.bos = begin >= 0 ? begin : t.eos;
  return t;
}

TokenTable token_table(const ExportTokenizer& tokenizer) {
  TokenTable table;
  const size_t n = size_t(tokenizer.vocab_size);
  table.text.resize(n);
  table.special.assign(n, false);
  table.present.assign(n, false);
  for (const auto& [bytes, id] : tokenizer.spec.vocab) {
    table.text[size_t(id)] = bytes_to_unicode_text(bytes);
    table.present[size_t(id)] = true;
  }
  for (const auto& [text, id] : tokenizer.spec.special_tokens) {
    table.text[size_t(id)] = text;
    table.special[size_t(id)] = true;
    table.present[size_t(id)] = true;
  }
  return table;
}

}  // namespace tessera
