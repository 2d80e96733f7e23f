// The keys and values of the tokens a model has already seen, kept per layer so that decoding
// one more token costs one token's projections instead of the whole prefix's (inference only).
//
// Layout: per layer, keys and values [B, capacity, KV, D] in the model's dtype and device
// (B: the batch of sequences, KV: key/value heads, D: head dim), keys after rotary embedding.
// Each row b has its own length: positions [0, length(b)) hold its tokens; a forward pass of
// T tokens writes them at positions length(b) .. length(b) + T - 1 of every layer, then the
// model advances every row by T. Rows of a right-padded batch are cut back to their real
// length with truncate(), so the next token overwrites the padding.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "models/transformer_config.h"

namespace tessera {

class KvCache {
 public:
  KvCache(const TransformerConfig& config, int64_t batch, int64_t capacity, DType dtype, Device device);

  int64_t batch() const { return static_cast<int64_t>(lengths_.size()); }
  int64_t capacity() const { return capacity_; }
  int64_t num_layers() const { return static_cast<int64_t>(keys_.size()); }
  int64_t length(int64_t row) const;

  // Writes row `row`'s new keys and values k, v [1, T, KV, D] of `layer` at positions
  // length(row) .. length(row) + T - 1, and returns its keys and values so far,
  // [1, length(row) + T, KV, D] views into the cache (valid until the next write).
  std::pair<Tensor, Tensor> write(int64_t layer, int64_t row, const Tensor& k, const Tensor& v);
  // Every row now holds `steps` more tokens (after all layers wrote them).
  void advance(int64_t steps);
  // Row `row` keeps only its first `length` tokens (length <= length(row)).
  void truncate(int64_t row, int64_t length);

 private:
  int64_t capacity_;
  std::vector<Tensor> keys_;    // per layer [B, capacity, KV, D]
  std::vector<Tensor> values_;  // per layer [B, capacity, KV, D]
  std::vector<int64_t> lengths_;
};

}  // namespace tessera
