// The frozen reference of DPO: the response log-probabilities of each pair under the reference
// policy, computed once per pair (the first time a step or an evaluation reads it) and cached,
// since the reference never changes. Today the reference is a second model holding the starting
// weights (dpo.reference_from, by default dpo.init_from). With LoRA the reference is the policy
// model itself with its adapters switched off, and no second copy is held: that variant only
// replaces how a batch's log-probs are computed (log_probs_of), the cache stays.
#pragma once

#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "launcher/preference_batches.h"
#include "models/gpt_model.h"

namespace tessera {

class DpoReference {
 public:
  explicit DpoReference(std::unique_ptr<GptModel> model);

  // The reference's [n] chosen and [n] rejected log-probs of the pairs `pair_indices` of the
  // split `split` (a cache key; 0 train, 1 validation), which `batch` holds in that order.
  std::pair<Tensor, Tensor> log_probs(int split, const std::vector<int64_t>& pair_indices,
                                      const PreferenceBatch& batch);
  int64_t computed_pairs() const { return computed_; }  // forward passes the cache saved are the rest

 private:
  // [2n] log-probs of every row of `batch` under the reference (no gradient).
  Tensor log_probs_of(const PreferenceBatch& batch) const;

  std::unique_ptr<GptModel> model_;
  std::map<std::pair<int, int64_t>, std::pair<float, float>> cache_;  // (split, pair) -> (chosen, rejected)
  int64_t computed_ = 0;
};

}  // namespace tessera
