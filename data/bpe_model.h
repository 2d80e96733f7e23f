// The BPE step of a byte-level tokenizer: turns one pre-tokenized piece (raw bytes) into ids.
// A piece starts as one part per byte; while some adjacent pair of parts is a merge, the pair
// with the lowest merge rank (the leftmost among equals) becomes one part. This is the rule of
// GPT-2's encoder.py, Hugging Face's BPE and tiktoken (whose ranks are the merged tokens' ids,
// the same order for GPT-2). Candidate pairs sit in a min-heap keyed by (rank, position) over
// a linked list of parts, so a piece of n bytes costs O(n log n). Pair ranks live in a flat
// open-addressing table: std::unordered_map's lookups were 40% of the merge loop's time.
// Two shortcuts give the same ids as the merge loop: a piece that is itself a token reachable
// by its own merges is looked up directly, and pieces that needed merging are remembered in a
// sharded, mutex-guarded cache (encode_piece is const and thread-safe).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tessera {

// Hash for maps keyed by std::string that are queried with std::string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
};
using BytesToId = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // `vocab`: every ordinary token's raw bytes and id; it must hold all 256 single bytes.
  // `merges`: pairs of tokens (raw bytes) in rank order; each pair's concatenation must be in
  // `vocab`. `ignore_merges`: a piece that is a token is that token even if its merges would
  // not produce it (Hugging Face's `ignore_merges`, tiktoken's behaviour). `source` names the
  // files in error messages.
  BpeModel(const BytesToId& vocab, const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges,
           const std::string& source);

  // The merge loop's working buffers, reused from piece to piece; one per thread.
  class Scratch {
    friend class BpeModel;
    struct Candidate {  // an adjacent pair of parts; stale once either part has changed
      int32_t rank;
      int32_t left;  // byte offset where the left part starts
      int32_t left_id;
      int32_t right_id;
      int32_t merged_id;
      // std::push_heap builds a max-heap: "less" here means "merged later".
      bool operator<(const Candidate& other) const {
        return rank != other.rank ? rank > other.rank : left > other.left;
      }
    };
    std::vector<int32_t> token_, next_, prev_;
    std::vector<Candidate> heap_;
  };

  // Appends the ids of one piece.
  void encode_piece(std::string_view piece, std::vector<int32_t>& ids, Scratch& scratch) const;

 private:
  // Appends the ids the merge loop alone gives (no direct lookup, no cache).
  void merge_piece(std::string_view piece, std::vector<int32_t>& ids, Scratch& scratch) const;

  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  // (left id, right id) -> Merge, linear probing over a power-of-two table at most half full.
  class PairTable {
   public:
    void build(const std::vector<std::pair<uint64_t, Merge>>& entries);
    const Merge* find(uint64_t key) const {
      for (size_t slot = (key * 0x9E3779B97F4A7C15ull) >> shift_;; slot = (slot + 1) & mask_) {
        if (slots_[slot].key == key) return &slots_[slot].merge;
        if (slots_[slot].key == kEmpty) return nullptr;
      }
    }

   private:
    static constexpr uint64_t kEmpty = ~uint64_t{0};  // no pair of non-negative ids has this key
    struct Slot {
      uint64_t key = kEmpty;
      Merge merge{};
    };
    std::vector<Slot> slots_;
    size_t mask_ = 0;
    int shift_ = 64;
  };
  // A cached piece's ids, stored inline (one allocation per entry: the map node; keys of up
  // to 15 bytes fit std::string's inline buffer). Pieces with more ids are not cached.
  struct CachedIds {
    static constexpr size_t kCapacity = 14;
    uint32_t count;
    std::array<int32_t, kCapacity> ids;
  };
  struct CacheShard {
    std::mutex mutex;
    std::unordered_map<std::string, CachedIds, StringHash, std::equal_to<>> pieces;
  };
  static constexpr size_t kCacheShards = 64;
  static constexpr size_t kCacheEntriesPerShard = 2048;  // a full shard is cleared

  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }

  std::array<int32_t, 256> byte_ids_{};
  PairTable merges_;
  BytesToId whole_pieces_;  // tokens a piece may map to directly
  std::unique_ptr<std::array<CacheShard, kCacheShards>> cache_;
};

}  // namespace tessera
