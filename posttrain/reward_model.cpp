#include "posttrain/reward_model.h"

namespace tessera {

RewardModel::RewardModel(const TransformerConfig& config, uint64_t seed, ParamOptions options)
    : backbone_(std::make_unique<GptModel>(config, seed, options)) {
  Generator generator(seed + 1);
  head_ = std::make_unique<RewardHead>(config.hidden_size, generator, config.init_method_std, options);
}

Tensor RewardModel::rewards(const Tensor& tokens, const std::vector<int64_t>& lengths) const {
  return head_->forward(backbone_->forward_hidden(tokens), lengths);
}

std::vector<std::pair<std::string, Tensor>> RewardModel::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out = backbone_->named_parameters();
  out.emplace_back("score.weight", head_->weight());
  return out;
}

std::vector<Tensor> RewardModel::parameters() const {
  std::vector<Tensor> out;
  for (auto& entry : named_parameters()) out.push_back(entry.second);
  return out;
}

void RewardModel::train(bool training) {
  backbone_->train(training);
  head_->train(training);
}

}  // namespace tessera
