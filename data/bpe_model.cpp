#include "data/bpe_model.h"

#include <algorithm>

#include "core/check.h"
#include "data/bpe_byte_unicode.h"

namespace tessera {

void BpeModel::PairTable::build(const std::vector<std::pair<uint64_t, Merge>>& entries) {
  size_t capacity = 2;
  shift_ = 63;
  while (capacity < 2 * entries.size()) capacity *= 2, --shift_;
  slots_.assign(capacity, Slot{});
  mask_ = capacity - 1;
  for (const auto& [key, merge] : entries) {
    size_t slot = (key * 0x9E3779B97F4A7C15ull) >> shift_;
    while (slots_[slot].key != kEmpty && slots_[slot].key != key) slot = (slot + 1) & mask_;
    // The first (lowest-rank) occurrence of a duplicated pair wins, as in Hugging Face.
    if (slots_[slot].key == kEmpty) slots_[slot] = Slot{key, merge};
  }
}

BpeModel::BpeModel(const BytesToId& vocab, const std::vector<std::pair<std::string, std::string>>& merges,
                   bool ignore_merges, const std::string& source)
    : cache_(std::make_unique<std::array<CacheShard, kCacheShards>>()) {
  for (CacheShard& shard : *cache_) shard.pieces.reserve(kCacheEntriesPerShard);
  for (int byte = 0; byte < 256; ++byte) {
    auto found = vocab.find(std::string(1, static_cast<char>(byte)));
    TS_CHECK(found != vocab.end(), source, ": byte-level BPE needs a token for every byte, but byte 0x", std::hex, byte,
             std::dec, " ('", bytes_to_unicode_text(std::string(1, static_cast<char>(byte))),
             "' in the vocabulary's alphabet) has none");
    byte_ids_[static_cast<size_t>(byte)] = found->second;
  }
  std::vector<std::pair<uint64_t, Merge>> pair_merges;
  pair_merges.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    auto left_id = vocab.find(left), right_id = vocab.find(right), merged_id = vocab.find(left + right);
    TS_CHECK(left_id != vocab.end() && right_id != vocab.end() && merged_id != vocab.end(), source, ": merge ",
             rank + 1, " '", bytes_to_unicode_text(left), " ", bytes_to_unicode_text(right),
             "' uses a token missing from the vocabulary ('",
             bytes_to_unicode_text(left_id == vocab.end()    ? left
                                   : right_id == vocab.end() ? right
                                                             : left + right),
             "'); the vocabulary and merges files do not belong together");
    pair_merges.emplace_back(pair_key(left_id->second, right_id->second),
                             Merge{static_cast<int32_t>(rank), merged_id->second});
  }
  merges_.build(pair_merges);
  Scratch scratch;
  std::vector<int32_t> merged;
  for (const auto& [bytes, id] : vocab) {
    merged.clear();
    if (!ignore_merges) merge_piece(bytes, merged, scratch);
    if (ignore_merges || merged == std::vector<int32_t>{id}) whole_pieces_.emplace(bytes, id);
  }
}

void BpeModel::merge_piece(std::string_view piece, std::vector<int32_t>& ids, Scratch& scratch) const {
  TS_CHECK(piece.size() < (size_t{1} << 31), "BPE: a single pre-tokenized piece of ", piece.size(),
           " bytes is too long (the limit is 2 GiB); split the document");
  const int32_t n = static_cast<int32_t>(piece.size());
  // Parts form a linked list over byte offsets: a part starting at i has id token[i] and is
  // followed by the part starting at next[i] (n at the end); token[i] == -1 once i is merged away.
  scratch.token_.resize(piece.size());
  scratch.next_.resize(piece.size());
  scratch.prev_.resize(piece.size());
  int32_t* token = scratch.token_.data();
  int32_t* next = scratch.next_.data();
  int32_t* prev = scratch.prev_.data();
  std::vector<Scratch::Candidate>& heap = scratch.heap_;
  heap.clear();
  auto push_pair = [&](int32_t left) {
    int32_t right = next[left];
    if (right >= n) return;
    const Merge* merge = merges_.find(pair_key(token[left], token[right]));
    if (merge == nullptr) return;
    heap.push_back(Scratch::Candidate{merge->rank, left, token[left], token[right], merge->merged_id});
    std::push_heap(heap.begin(), heap.end());
  };
  for (int32_t i = 0; i < n; ++i) {
    token[i] = byte_ids_[static_cast<unsigned char>(piece[static_cast<size_t>(i)])];
    next[i] = i + 1;
    prev[i] = i - 1;
  }
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    Scratch::Candidate candidate = heap.back();
    heap.pop_back();
    int32_t left = candidate.left, right = next[left];
    if (token[left] != candidate.left_id || right >= n || token[right] != candidate.right_id) {
      continue;  // stale: one of the two parts has been merged since
    }
    token[left] = candidate.merged_id;
    token[right] = -1;
    next[left] = next[right];
    if (next[left] < n) prev[next[left]] = left;
    if (prev[left] >= 0) push_pair(prev[left]);
    push_pair(left);
  }
  for (int32_t i = 0; i < n; i = next[i]) ids.push_back(token[i]);
}

void BpeModel::encode_piece(std::string_view piece, std::vector<int32_t>& ids, Scratch& scratch) const {
  if (auto whole = whole_pieces_.find(piece); whole != whole_pieces_.end()) {
    ids.push_back(whole->second);
    return;
  }
  CacheShard& shard = (*cache_)[StringHash{}(piece) % kCacheShards];
  {
    std::lock_guard lock(shard.mutex);
    if (auto cached = shard.pieces.find(piece); cached != shard.pieces.end()) {
      ids.insert(ids.end(), cached->second.ids.begin(), cached->second.ids.begin() + cached->second.count);
      return;
    }
  }
  size_t first = ids.size();
  merge_piece(piece, ids, scratch);
  size_t count = ids.size() - first;
  if (count > CachedIds::kCapacity) return;
  CachedIds entry{static_cast<uint32_t>(count), {}};
  std::copy(ids.begin() + static_cast<std::ptrdiff_t>(first), ids.end(), entry.ids.begin());
  std::lock_guard lock(shard.mutex);
  if (shard.pieces.size() >= kCacheEntriesPerShard) shard.pieces.clear();
  shard.pieces.emplace(piece, entry);
}

}  // namespace tessera
