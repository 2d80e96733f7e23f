// The frozen reference of DPO: the response log-probabilities of each pair under the reference
// policy, computed once per pair (the first time a step or an evaluation reads it) and cached,
// since the reference never changes. Without LoRA the reference is a second model holding the
// starting weights (dpo.reference_from, by default dpo.init_from). With LoRA it is the policy model
// itself with its adapters switched off (models/lora.h LoraDisabledScope) and in eval mode for the
// forward: the base the policy started from, with no second copy of the weights held.
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
  // The LoRA policy with its adapters off; `lora_policy` must outlive this.
  explicit DpoReference(GptModel& lora_policy);

  // The reference's [n] chosen and [n] rejected log-probs of the pairs `pair_indices` of the
  // split `split` (a cache key; 0 train, 1 validation), which `batch` holds in that order.
  std::pair<Tensor, Tensor> log_probs(int split, const std::vector<int64_t>& pair_indices,
                                      const PreferenceBatch& batch);
  int64_t computed_pairs() const { return computed_; }  // forward passes the cache saved are the rest

 private:
  // [2n] log-probs of every row of `batch` under the reference (no gradient).
  Tensor log_probs_of(const PreferenceBatch& batch) const;

  std::unique_ptr<GptModel> owned_;                                   // the frozen copy; null with LoRA
  GptModel* model_ = nullptr;                                         // owned_, or the LoRA policy
  std::map<std::pair<int, int64_t>, std::pair<float, float>> cache_;  // (split, pair) -> (chosen, rejected)
  int64_t computed_ = 0;
};

}  // namespace tessera
