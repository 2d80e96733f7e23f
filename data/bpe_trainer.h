// Learns a byte-level BPE vocabulary from text files, the way GPT-2's was learned: the text is
// pre-tokenized by the regex, each distinct piece is counted, and starting from the 256 single
// bytes the most frequent adjacent pair (counted over all pieces, weighted by their counts) is
// merged into a new token until the vocabulary has the requested size. Ties go to the pair
// whose (left id, right id) is smallest; byte tokens have ids 0-255 (id = byte value), learned
// tokens follow in merge order, special tokens take the last ids. Pairs never cross pieces.
// Files are read in blocks; a character cut at the block's end and the block's last two pieces
// are carried into the next one, which gives the pieces of the whole text for patterns whose
// matches depend on at most the next two pieces (GPT-2's and Llama 3's: a contraction "'ve" is
// "'" + "v" until its "e" arrives), so memory stays bounded by the distinct pieces, not the
// file size.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/bpe_model.h"
#include "data/bpe_pretokenizer.h"
#include "data/tokenizer_files.h"

namespace tessera {

struct BpeTrainerOptions {
  int32_t vocab_size = 0;  // byte tokens + learned tokens + special tokens
  std::vector<std::string> special_tokens = {"<|endoftext|>"};
  std::string pattern = std::string(kGpt2Pattern);
  // Called after every 1% of the merges (and at the end) with merges done and merges wanted.
  std::function<void(int64_t done, int64_t total)> on_progress;
};

// Distinct pre-tokenized pieces of the files and how often each occurs.
using PieceCounts = std::unordered_map<std::string, int64_t, StringHash, std::equal_to<>>;
// Files are read `block_bytes` at a time.
PieceCounts count_pieces(const std::vector<std::filesystem::path>& files, const std::string& pattern,
                         size_t block_bytes = size_t{4} << 20);

// The vocabulary and merges learned from `pieces`; throws if the pieces run out of pairs first.
TokenizerSpec learn_bpe(const PieceCounts& pieces, const BpeTrainerOptions& options);

// count_pieces + learn_bpe.
TokenizerSpec train_bpe(const std::vector<std::filesystem::path>& files, const BpeTrainerOptions& options);

}  // namespace tessera
