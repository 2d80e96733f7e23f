#include "data/bpe_trainer.h"

#include <algorithm>
#include <fstream>
#include <queue>

#include "core/check.h"
#include "data/bpe_utf8.h"

namespace tessera {
namespace {

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

struct Word {
  std::vector<int32_t> symbols;
  int64_t count;
};

// A pair waiting to be merged; stale once its count has changed (a fresh entry is pushed then).
struct Candidate {
  int64_t count;
  uint64_t pair;
  bool operator<(const Candidate& other) const {  // the heap's top: most frequent, then smallest pair
    return count != other.count ? count < other.count : pair > other.pair;
  }
};

// Pair counts over all words, which words hold each pair, and the merge queue.
class PairIndex {
 public:
  explicit PairIndex(const std::vector<Word>& words) {
    for (size_t w = 0; w < words.size(); ++w) add(words, static_cast<int32_t>(w), +1);
    push_changed();
  }

  // Adds (sign +1) or removes (sign -1) the pairs of one word.
  void add(const std::vector<Word>& words, int32_t w, int sign) {
    const Word& word = words[static_cast<size_t>(w)];
    for (size_t i = 0; i + 1 < word.symbols.size(); ++i) {
      uint64_t key = pair_key(word.symbols[i], word.symbols[i + 1]);
      counts_[key] += sign * word.count;
      changed_.push_back(key);
      if (sign > 0) holders_[key].push_back(w);
    }
  }

  void push_changed() {
    std::sort(changed_.begin(), changed_.end());
    changed_.erase(std::unique(changed_.begin(), changed_.end()), changed_.end());
    for (uint64_t key : changed_) {
      if (int64_t count = counts_[key]; count > 0) queue_.push(Candidate{count, key});
    }
    changed_.clear();
  }

  // The most frequent pair, or false when no pair is left.
  bool pop_best(uint64_t& pair) {
    while (!queue_.empty()) {
      Candidate top = queue_.top();
      queue_.pop();
      if (counts_[top.pair] == top.count) {
        pair = top.pair;
        return true;
      }
    }
    return false;
  }

  // The words that may hold `pair` (each once), forgetting the list.
  std::vector<int32_t> take_holders(uint64_t pair) {
    std::vector<int32_t> holders = std::move(holders_[pair]);
    holders_.erase(pair);
    std::sort(holders.begin(), holders.end());
    holders.erase(std::unique(holders.begin(), holders.end()), holders.end());
    return holders;
  }

 private:
  std::unordered_map<uint64_t, int64_t> counts_;
  std::unordered_map<uint64_t, std::vector<int32_t>> holders_;
  std::vector<uint64_t> changed_;
  std::priority_queue<Candidate> queue_;
};

bool holds_pair(const Word& word, int32_t left, int32_t right) {
  for (size_t i = 0; i + 1 < word.symbols.size(); ++i) {
    if (word.symbols[i] == left && word.symbols[i + 1] == right) return true;
  }
  return false;
}

// Replaces each non-overlapping occurrence of (left, right), left to right, by `merged`.
void merge_in_word(Word& word, int32_t left, int32_t right, int32_t merged) {
  std::vector<int32_t>& symbols = word.symbols;
  size_t out = 0;
  for (size_t i = 0; i < symbols.size(); ++i) {
    if (i + 1 < symbols.size() && symbols[i] == left && symbols[i + 1] == right) {
      symbols[out++] = merged;
      ++i;
    } else {
      symbols[out++] = symbols[i];
    }
  }
  symbols.resize(out);
}

}  // namespace

PieceCounts count_pieces(const std::vector<std::filesystem::path>& files, const std::string& pattern,
                         size_t block_bytes) {
  TS_CHECK(block_bytes > 0, "BPE trainer: block_bytes must be positive");
  Pretokenizer pretokenizer(pattern, "BPE trainer pattern");
  PieceCounts counts;
  std::vector<std::string_view> pieces;
  std::string text, block(block_bytes, '\0');
  for (const auto& path : files) {
    std::ifstream in(path, std::ios::binary);
    TS_CHECK(in.good(), "BPE trainer: cannot open text file ", path, "; check the path");
    text.clear();
    bool at_end = false;
    while (!at_end) {
      in.read(block.data(), static_cast<std::streamsize>(block.size()));
      at_end = static_cast<size_t>(in.gcount()) < block.size();
      text.append(block.data(), static_cast<size_t>(in.gcount()));
      // Unless the file ended, a character cut by the block boundary and the last two pieces
      // (which more text could extend: "'" + "v" becomes "'ve") are carried into the next block.
      size_t complete = at_end ? text.size() : utf8_length_without_open_tail(text);
      pieces.clear();
      pretokenizer.split(std::string_view(text).substr(0, complete),
                         [&](std::string_view piece) { pieces.push_back(piece); });
      size_t final_pieces = at_end ? pieces.size() : pieces.size() - std::min<size_t>(pieces.size(), 2);
      for (size_t i = 0; i < final_pieces; ++i) ++counts[std::string(pieces[i])];
      size_t carried_from =
          final_pieces < pieces.size() ? static_cast<size_t>(pieces[final_pieces].data() - text.data()) : complete;
      text.erase(0, carried_from);
    }
    TS_CHECK(!in.bad(), "BPE trainer: reading ", path, " failed");
  }
  return counts;
}

TokenizerSpec learn_bpe(const PieceCounts& pieces, const BpeTrainerOptions& options) {
  const int64_t specials = static_cast<int64_t>(options.special_tokens.size());
  const int64_t wanted = int64_t{options.vocab_size} - 256 - specials;
  TS_CHECK(wanted >= 0, "BPE trainer: vocab_size ", options.vocab_size, " is below the 256 byte tokens plus ", specials,
           " special tokens");
  TokenizerSpec spec;
  spec.pattern = options.pattern;
  spec.source = "BPE trainer";
  std::vector<std::string> id_bytes;
  for (int byte = 0; byte < 256; ++byte) {
    id_bytes.emplace_back(1, static_cast<char>(byte));
    spec.vocab.emplace(id_bytes.back(), byte);
  }
  std::vector<Word> words;
  words.reserve(pieces.size());
  for (const auto& [piece, count] : pieces) {
    Word word{{}, count};
    for (unsigned char byte : piece) word.symbols.push_back(byte);
    words.push_back(std::move(word));
  }
  PairIndex index(words);
  int64_t learned = 0, reported_percent = -1;
  while (learned < wanted) {
    uint64_t pair = 0;
    TS_CHECK(index.pop_best(pair), "BPE trainer: the text ran out of pairs to merge after ", learned,
             " new tokens, short of the ", wanted, " needed for vocab_size ", options.vocab_size,
             "; train on more text or ask for a smaller vocabulary");
    int32_t left = static_cast<int32_t>(pair >> 32), right = static_cast<int32_t>(pair & 0xFFFFFFFFu);
    std::string bytes = id_bytes[static_cast<size_t>(left)] + id_bytes[static_cast<size_t>(right)];
    auto [entry, is_new] = spec.vocab.emplace(bytes, static_cast<int32_t>(id_bytes.size()));
    if (is_new) {
      id_bytes.push_back(bytes);
      ++learned;
    }
    spec.merges.emplace_back(id_bytes[static_cast<size_t>(left)], id_bytes[static_cast<size_t>(right)]);
    for (int32_t w : index.take_holders(pair)) {
      Word& word = words[static_cast<size_t>(w)];
      if (!holds_pair(word, left, right)) continue;  // merged away by an earlier merge
      index.add(words, w, -1);
      merge_in_word(word, left, right, entry->second);
      index.add(words, w, +1);
    }
    index.push_changed();
    if (options.on_progress && (learned * 100 / std::max<int64_t>(wanted, 1) > reported_percent || learned == wanted)) {
      reported_percent = learned * 100 / std::max<int64_t>(wanted, 1);
      options.on_progress(learned, wanted);
    }
  }
  for (const std::string& token : options.special_tokens) {
    spec.special_tokens.emplace_back(token, static_cast<int32_t>(id_bytes.size()));
    id_bytes.push_back(token);
  }
  return spec;
}

TokenizerSpec train_bpe(const std::vector<std::filesystem::path>& files, const BpeTrainerOptions& options) {
  return learn_bpe(count_pieces(files, options.pattern), options);
}

}  // namespace tessera
