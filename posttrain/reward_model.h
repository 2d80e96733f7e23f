// RewardModel: a GptModel backbone with a scalar RewardHead on the last real token's final hidden
// state (Hugging Face's ...ForSequenceClassification shape). Parameter names: the backbone's
// (models/gpt_model.h) and score.weight [1, C], so a reward model checkpoint is an LM checkpoint
// plus one entry, and an LM checkpoint (e.g. an SFT run's) initialises the backbone.
// rewards(tokens, lengths): rows right-padded, row b read at position lengths[b] - 1 -> [B].
// An untied output layer stays a parameter (so LM checkpoints load and reward model checkpoints
// stay LM checkpoints plus one entry) but is unused: it gets no gradient, and AdamW skips it.
// The whole model on one tp rank (GptModel::forward_hidden's limits).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/gpt_model.h"
#include "posttrain/reward_head.h"

namespace tessera {

class RewardModel {
 public:
  // The backbone draws from `seed` like GptModel; the head from its own stream Generator(seed + 1)
  // with the model's init_method_std.
  RewardModel(const TransformerConfig& config, uint64_t seed, ParamOptions options = {});

  Tensor rewards(const Tensor& tokens, const std::vector<int64_t>& lengths) const;
  GptModel& backbone() const { return *backbone_; }
  const RewardHead& head() const { return *head_; }
  // The backbone's named parameters, then ("score.weight", the head's weight).
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  void train(bool training = true);

 private:
  std::unique_ptr<GptModel> backbone_;
  std::unique_ptr<RewardHead> head_;
};

}  // namespace tessera
