// RewardHead: the scalar head of a reward model (and a PPO critic's value head). A linear map
// C -> 1 without bias, Hugging Face's sequence-classification "score" layer: register it as
// "score" in the reward model so its parameter is score.weight [1, C].
//   forward(hidden, lengths): the reward of each row, read at the row's last real token
//     (right padding: position lengths[b] - 1) -> [B].
//   forward(hidden, mask): the same with the last position where mask [B, T] is 1.
//   values(hidden): one value per position -> [B, T] (the critic's per-token values).
// `hidden` is the final (normed) hidden states [B, T, C] of the backbone.
#pragma once

#include <vector>

#include "core/nn/layers.h"

namespace tessera {

class RewardHead : public Module {
 public:
  RewardHead(int64_t hidden_size, Generator& generator, double init_std = 0.02, ParamOptions options = {});

  Tensor forward(const Tensor& hidden, const std::vector<int64_t>& lengths) const;
  Tensor forward(const Tensor& hidden, const Tensor& mask) const;
  Tensor values(const Tensor& hidden) const;
  const Tensor& weight() const { return weight_; }

 private:
  Tensor weight_;  // [1, C]
};

// Per row of a [B, T] mask (1 = real token), the index of its last 1. Refuses an empty row.
std::vector<int64_t> last_token_indices(const Tensor& mask);

}  // namespace tessera
