// Tokenizer files on disk <-> TokenizerSpec, the plain description a Tokenizer is built from.
// Layouts read (all byte-level BPE, tokens spelled in GPT-2's byte-to-unicode alphabet):
//   GPT-2: encoder.json or vocab.json ({"token": id, ...}) + vocab.bpe or merges.txt (an
//     optional "#version" line, then one merge "left right" per line, in rank order). As in
//     tiktoken, "<|endoftext|>" and "<|startoftext|>" in the vocabulary are special tokens.
//   Hugging Face tokenizer.json: model {type "BPE", vocab, merges as "a b" or ["a", "b"],
//     ignore_merges}, added_tokens (all become special tokens), no normalizer, and a
//     pre_tokenizer that is ByteLevel (use_regex: GPT-2's pattern) or a Sequence of a Split
//     {pattern {Regex}, behavior "Isolated"} and a ByteLevel without regex (Llama 3, Qwen 2).
// Anything else is refused with an error that names the file, the key and what was expected.
// Post-processors (Llama 3's BOS template) are not applied: encode() returns the text's ids.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "data/bpe_model.h"

namespace tessera {

struct TokenizerSpec {
  BytesToId vocab;                                              // ordinary tokens: raw bytes -> id
  std::vector<std::pair<std::string, std::string>> merges;      // raw bytes, in rank order
  std::vector<std::pair<std::string, int32_t>> special_tokens;  // text -> id
  std::string pattern;                                          // the pre-tokenization regex
  bool ignore_merges = false;                                   // see BpeModel
  std::string source;                                           // the files, for messages
};

TokenizerSpec read_gpt2_tokenizer_files(const std::filesystem::path& vocab_json, const std::filesystem::path& merges);
TokenizerSpec read_hf_tokenizer_json(const std::filesystem::path& tokenizer_json);
// A tokenizer.json, or a directory holding tokenizer.json, encoder.json + vocab.bpe or
// vocab.json + merges.txt (looked for in that order).
TokenizerSpec read_tokenizer_files(const std::filesystem::path& path);

// Writes vocab.json (ordinary and special tokens) and merges.txt in GPT-2's layout.
void write_gpt2_tokenizer_files(const TokenizerSpec& spec, const std::filesystem::path& vocab_json,
                                const std::filesystem::path& merges_txt);

}  // namespace tessera
