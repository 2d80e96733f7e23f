#include "launcher/dpo_reference.h"

#include "core/autograd/grad_mode.h"
#include "core/check.h"
#include "models/lora.h"

namespace tessera {

DpoReference::DpoReference(std::unique_ptr<GptModel> model) : owned_(std::move(model)), model_(owned_.get()) {
  model_->eval();
  for (Tensor p : model_->parameters()) p.set_requires_grad(false);
}

DpoReference::DpoReference(GptModel& lora_policy) : model_(&lora_policy) {
  TS_CHECK(!lora_adapters(lora_policy).empty(), "DpoReference: the policy has no LoRA adapters to switch off");
}

Tensor DpoReference::log_probs_of(const PreferenceBatch& batch) const {
  NoGradGuard no_grad;
  if (owned_) return response_log_probs(*model_, batch);
  // The policy trains in train mode (dropout); the reference's log-probs are deterministic.
  const bool training = model_->is_training();
  model_->eval();
  Tensor out;
  {
    LoraDisabledScope adapters_off(*model_);
    out = response_log_probs(*model_, batch);
  }
  model_->train(training);
  return out;
}

std::pair<Tensor, Tensor> DpoReference::log_probs(int split, const std::vector<int64_t>& pair_indices,
                                                  const PreferenceBatch& batch) {
  const size_t n = pair_indices.size();
  bool all_cached = true;
  for (int64_t index : pair_indices) all_cached = all_cached && cache_.count({split, index}) > 0;
  if (!all_cached) {
    // The whole micro-batch in one forward; pairs already cached keep their first value.
    const std::vector<float> rows = log_probs_of(batch).to(Device::cpu()).to_vector<float>();
    for (size_t i = 0; i < n; ++i) {
      if (cache_.emplace(std::make_pair(split, pair_indices[i]), std::make_pair(rows[i], rows[n + i])).second) {
        ++computed_;
      }
    }
  }
  std::vector<float> chosen(n), rejected(n);
  for (size_t i = 0; i < n; ++i) std::tie(chosen[i], rejected[i]) = cache_.at({split, pair_indices[i]});
  const Device device = batch.tokens.device();
  return {Tensor::from_vector(chosen, {int64_t(n)}).to(device), Tensor::from_vector(rejected, {int64_t(n)}).to(device)};
}

}  // namespace tessera
