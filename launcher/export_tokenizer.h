// The tokenizer an export embeds: the one named by --tokenizer, else the one the checkpoint's
// recipe trained with (data.tokenizer_model, or data.vocab_file + data.merge_file), the same
// rule as `tessera generate`.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "data/tokenizer_files.h"
#include "launcher/recipe.h"

namespace tessera {

struct ExportTokenizer {
  TokenizerSpec spec;
  std::filesystem::path tokenizer_json;  // set when the source is a Hugging Face tokenizer.json
  int32_t eos = -1;                      // end-of-text id (-1: none)
  int32_t bos = -1;                      // <|begin_of_text|> where present, else eos
  int32_t vocab_size = 0;                // one more than the largest id
};

// Nothing when neither --tokenizer (`option`) nor the recipe names one.
std::optional<ExportTokenizer> find_export_tokenizer(const std::string& option, const Recipe& recipe);

// Token text as vocabulary files spell it: ordinary tokens in GPT-2's byte-to-unicode
// alphabet, special tokens as they are. Ids no token has are empty. Size vocab_size.
struct TokenTable {
  std::vector<std::string> text;
  std::vector<bool> special;
  std::vector<bool> present;
};
TokenTable token_table(const ExportTokenizer& tokenizer);

}  // namespace tessera
