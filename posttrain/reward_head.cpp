#include "posttrain/reward_head.h"

#include "core/autograd/grad_mode.h"
#include "core/check.h"
#include "core/ops/ops.h"

namespace tessera {

RewardHead::RewardHead(int64_t hidden_size, Generator& generator, double init_std, ParamOptions options) {
  TS_CHECK(hidden_size > 0, "RewardHead: hidden_size must be positive, got ", hidden_size);
  Tensor weight = Tensor::empty({1, hidden_size}, options.dtype, options.device);
  {
    NoGradGuard no_grad;
    normal_(weight, generator, 0.0, init_std);
  }
  weight_ = register_parameter("weight", weight);
}

Tensor RewardHead::values(const Tensor& hidden) const {
  TS_CHECK(hidden.defined() && hidden.dim() == 3 && hidden.size(2) == weight_.size(1),
           "RewardHead: hidden states must be [B, T, ", weight_.size(1), "], got ",
           hidden.defined() ? hidden.shape() : Shape{});
  return linear(hidden, weight_).squeeze(-1);
}

Tensor RewardHead::forward(const Tensor& hidden, const std::vector<int64_t>& lengths) const {
  TS_CHECK(hidden.defined() && hidden.dim() == 3 && hidden.size(2) == weight_.size(1),
           "RewardHead: hidden states must be [B, T, ", weight_.size(1), "], got ",
           hidden.defined() ? hidden.shape() : Shape{});
  TS_CHECK(static_cast<int64_t>(lengths.size()) == hidden.size(0), "RewardHead: ", lengths.size(),
           " lengths for a batch of ", hidden.size(0), " rows; pass one length per row");
  std::vector<Tensor> last;
  last.reserve(lengths.size());
  for (size_t b = 0; b < lengths.size(); ++b) {
    TS_CHECK(lengths[b] >= 1 && lengths[b] <= hidden.size(1), "RewardHead: length ", lengths[b], " of row ", b,
             " is outside [1, ", hidden.size(1), "]");
    last.push_back(hidden.narrow(0, static_cast<int64_t>(b), 1).narrow(1, lengths[b] - 1, 1).reshape({hidden.size(2)}));
  }
  return linear(stack(last, 0), weight_).squeeze(-1);
}

Tensor RewardHead::forward(const Tensor& hidden, const Tensor& mask) const {
  std::vector<int64_t> lengths = last_token_indices(mask);
  for (int64_t& index : lengths) ++index;
  return forward(hidden, lengths);
}

std::vector<int64_t> last_token_indices(const Tensor& mask) {
  TS_CHECK(mask.defined() && mask.dim() == 2, "last_token_indices: mask must be [B, T], got ",
           mask.defined() ? mask.shape() : Shape{});
  std::vector<double> m = mask.to_vector<double>();
  const int64_t rows = mask.size(0), cols = mask.size(1);
  std::vector<int64_t> last(static_cast<size_t>(rows), -1);
  for (int64_t b = 0; b < rows; ++b) {
    for (int64_t t = 0; t < cols; ++t) {
      if (m[static_cast<size_t>(b * cols + t)] != 0) last[static_cast<size_t>(b)] = t;
    }
    TS_CHECK(last[static_cast<size_t>(b)] >= 0, "last_token_indices: row ", b, " of the mask has no real token");
  }
  return last;
}

}  // namespace tessera
