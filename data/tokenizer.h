// Byte-level BPE tokenizer, identical to GPT-2's (and to tiktoken built from the same ranks).
// Text is cut into pieces in four steps:
//   1. special tokens (when recognized) are cut out of the text and become their own ids;
//   2. the rest is split into maximal valid UTF-8 runs and maximal runs of bytes that are not
//      part of any valid UTF-8 sequence; an invalid run is one piece of its own (bytes-level
//      BPE handles any byte), so any byte string round-trips exactly;
//   3. each valid run is pre-tokenized by the model's regex (PCRE2, UTF + UCP, JIT) as if it
//      were a whole text: matches are pieces, text between matches is a piece too;
//   4. each piece is encoded by BPE over its raw bytes, merges applied by rank.
// Ids are int32. decode() concatenates the bytes of the ids, so decode(encode(s)) == s for
// every byte string s. Tokens are kept as raw bytes; the GPT-2 byte-to-unicode alphabet only
// appears in the files (bpe_byte_unicode.h).
// Const methods are thread-safe: encode() and decode() may run on many threads at once on one
// Tokenizer (its word cache is sharded and mutex-guarded; bench/tokenizer_bench.cpp measures the
// scaling). add_special_tokens() and set_eod_token() must not run concurrently with them.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "data/bpe_model.h"

namespace tessera {

class Pretokenizer;
class SpecialTokenSplitter;
struct TokenizerSpec;

// What encode() does with special-token strings ("<|endoftext|>") found in the text.
enum class SpecialTokens {
  kAsText,     // encoded as ordinary text, like any other bytes (Megatron's GPT-2 preprocessing)
  kRecognize,  // each occurrence becomes the special token's id (Hugging Face's default)
};

class Tokenizer {
 public:
  // Loads a tokenizer from `path`, which is one of:
  //   a Hugging Face tokenizer.json of a BPE model;
  //   a directory holding tokenizer.json, or encoder.json + vocab.bpe, or vocab.json + merges.txt.
  // `eod_token` names the end-of-document token (see set_eod_token); empty picks the first
  // special token present among <|endoftext|>, <|end_of_text|>, </s>, <eos>.
  static Tokenizer load(const std::filesystem::path& path, const std::string& eod_token = "");
  // GPT-2 files: encoder.json + vocab.bpe, or vocab.json + merges.txt. Pass two paths as
  // std::filesystem::path: two std::strings pick the overload above (whose error then says so).
  static Tokenizer load(const std::filesystem::path& vocab, const std::filesystem::path& merges,
                        const std::string& eod_token = "");
  // From an in-memory description (tokenizer_files.h); the trainer's result, for one.
  static Tokenizer from_spec(const TokenizerSpec& spec);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  std::vector<int32_t> encode(std::string_view text, SpecialTokens specials = SpecialTokens::kAsText) const;
  // Appends the ids of `text` to `ids` (no allocation per call when `ids` has capacity).
  void encode_append(std::string_view text, std::vector<int32_t>& ids,
                     SpecialTokens specials = SpecialTokens::kAsText) const;
  // The bytes of the ids, concatenated; throws on an id outside [0, vocab_size()).
  std::string decode(std::span<const int32_t> ids) const;

  // Makes `token` (a special token's text or an ordinary token's bytes) the end-of-document
  // token; throws if the tokenizer has no such token.
  void set_eod_token(std::string_view token);
  // Adds special tokens (e.g. "<|im_start|>"). A string already in the vocabulary keeps its
  // id and becomes special; a new one gets the next free id.
  void add_special_tokens(const std::vector<std::string>& tokens);

  // The pre-tokenization regex as given (before the \s rewrite of bpe_pretokenizer.h).
  const std::string& pattern() const;
  // One more than the largest id, special tokens included (GPT-2: 50257).
  int32_t vocab_size() const;
  // The end-of-document id appended after each document; throws if the tokenizer has none.
  int32_t eod_id() const;
  // The id of a token given by its raw bytes (or a special token's string); -1 if absent.
  int32_t token_id(std::string_view token) const;
  // The raw bytes of one id.
  std::string_view token_bytes(int32_t id) const;

 private:
  Tokenizer();
  void encode_ordinary(std::string_view text, std::vector<int32_t>& ids) const;
  void set_id_bytes(int32_t id, const std::string& bytes, const std::string& source);
  void pick_default_eod();

  BytesToId vocab_;                    // ordinary tokens: raw bytes -> id
  std::vector<std::string> id_bytes_;  // id -> raw bytes (special tokens: their text)
  std::vector<uint8_t> id_known_;      // 0 for ids no token has
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Pretokenizer> pretokenizer_;
  std::unique_ptr<SpecialTokenSplitter> specials_;
  int32_t eod_id_ = -1;
};

}  // namespace tessera
