#include "posttrain/advantages.h"

#include <cmath>

#include "core/check.h"

namespace tessera {

namespace {

struct HostMatrix {
  std::vector<double> values;
  int64_t rows = 0, cols = 0;
  double at(int64_t b, int64_t t) const { return values[static_cast<size_t>(b * cols + t)]; }
};

HostMatrix host_rows(const char* name, const char* what, const Tensor& x) {
  TS_CHECK(x.defined() && x.dim() == 2, name, ": ", what, " must be [B, T], got ", x.defined() ? x.shape() : Shape{});
  return {x.detach().to_vector<double>(), x.size(0), x.size(1)};
}

void check_shape(const char* name, const char* what, const Tensor& x, const Tensor& like) {
  TS_CHECK(x.defined() && x.shape() == like.shape(), name, ": ", what, " shape ", x.defined() ? x.shape() : Shape{},
           " must equal ", like.shape());
}

Tensor to_like(const std::vector<double>& values, const Tensor& like) {
  return Tensor::from_vector(values, like.shape()).to(like.dtype()).to(like.device());
}

}  // namespace

Tensor ppo_token_rewards(const Tensor& scores, const Tensor& kl, const Tensor& mask, double kl_coef) {
  HostMatrix k = host_rows("ppo_token_rewards", "kl", kl);
  check_shape("ppo_token_rewards", "mask", mask, kl);
  TS_CHECK(scores.defined() && scores.dim() == 1 && scores.size(0) == k.rows, "ppo_token_rewards: scores must be [",
           k.rows, "] (one per row), got ", scores.defined() ? scores.shape() : Shape{});
  HostMatrix m = host_rows("ppo_token_rewards", "mask", mask);
  std::vector<double> score = scores.detach().to_vector<double>();
  std::vector<double> out(k.values.size(), 0.0);
  for (int64_t b = 0; b < k.rows; ++b) {
    int64_t last = -1;
    for (int64_t t = 0; t < k.cols; ++t) {
      if (m.at(b, t) == 0) continue;
      out[static_cast<size_t>(b * k.cols + t)] = -kl_coef * k.at(b, t);
      last = t;
    }
    TS_CHECK(last >= 0, "ppo_token_rewards: row ", b, " of the mask has no response token; drop empty responses");
    out[static_cast<size_t>(b * k.cols + last)] += score[static_cast<size_t>(b)];
  }
  return to_like(out, kl);
}

GaeResult gae(const Tensor& rewards, const Tensor& values, const Tensor& mask, double gamma, double lambda) {
  HostMatrix r = host_rows("gae", "rewards", rewards);
  check_shape("gae", "values", values, rewards);
  check_shape("gae", "mask", mask, rewards);
  TS_CHECK(gamma >= 0 && gamma <= 1, "gae: gamma must be in [0, 1], got ", gamma);
  TS_CHECK(lambda >= 0 && lambda <= 1, "gae: lambda must be in [0, 1], got ", lambda);
  HostMatrix v = host_rows("gae", "values", values);
  HostMatrix m = host_rows("gae", "mask", mask);
  std::vector<double> advantages(r.values.size(), 0.0), returns(r.values.size(), 0.0);
  for (int64_t b = 0; b < r.rows; ++b) {
    double next_value = 0.0, next_advantage = 0.0;  // past the episode's end: terminal
    for (int64_t t = r.cols - 1; t >= 0; --t) {
      if (m.at(b, t) == 0) continue;
      double delta = r.at(b, t) + gamma * next_value - v.at(b, t);
      next_advantage = delta + gamma * lambda * next_advantage;
      next_value = v.at(b, t);
      size_t i = static_cast<size_t>(b * r.cols + t);
      advantages[i] = next_advantage;
      returns[i] = next_advantage + next_value;
    }
  }
  return {to_like(advantages, rewards), to_like(returns, rewards)};
}

Tensor whiten(const Tensor& values, const Tensor& mask, bool shift_mean) {
  check_shape("whiten", "mask", mask, values);
  std::vector<double> x = values.detach().to_vector<double>();
  std::vector<double> m = mask.detach().to_vector<double>();
  double count = 0, total = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    count += m[i];
    total += m[i] * x[i];
  }
  TS_CHECK(count >= 2, "whiten: the mask selects ", count, " elements; whitening needs at least 2");
  double mean = total / count;
  double squares = 0;
  for (size_t i = 0; i < x.size(); ++i) squares += m[i] * (x[i] - mean) * (x[i] - mean);
  double inv_std = 1.0 / std::sqrt(squares / (count - 1) + 1e-8);
  std::vector<double> out(x.size(), 0.0);
  for (size_t i = 0; i < x.size(); ++i) {
    if (m[i] != 0) out[i] = (x[i] - mean) * inv_std + (shift_mean ? 0.0 : mean);
  }
  return to_like(out, values);
}

Tensor grpo_advantages(const Tensor& rewards, const GrpoOptions& options) {
  TS_CHECK(rewards.defined() && rewards.dim() == 1, "grpo_advantages: rewards must be [num_prompts * group_size], got ",
           rewards.defined() ? rewards.shape() : Shape{});
  const int64_t g = options.group_size;
  TS_CHECK(g >= 2, "grpo_advantages: group_size must be >= 2 (the group std needs two samples), got ", g);
  TS_CHECK(rewards.numel() % g == 0, "grpo_advantages: ", rewards.numel(), " rewards do not split into groups of ", g,
           "; pass group_size samples for every prompt");
  TS_CHECK(options.eps >= 0, "grpo_advantages: eps must be >= 0, got ", options.eps);
  std::vector<double> r = rewards.detach().to_vector<double>();
  std::vector<double> out(r.size());
  for (size_t start = 0; start < r.size(); start += static_cast<size_t>(g)) {
    double mean = 0;
    for (int64_t i = 0; i < g; ++i) mean += r[start + static_cast<size_t>(i)];
    mean /= static_cast<double>(g);
    double squares = 0;
    for (int64_t i = 0; i < g; ++i) squares += std::pow(r[start + static_cast<size_t>(i)] - mean, 2);
    double std_dev = std::sqrt(squares / static_cast<double>(g - 1));
    double divisor = options.scale_by_std ? std_dev + options.eps : 1.0;
    for (int64_t i = 0; i < g; ++i)
      out[start + static_cast<size_t>(i)] = (r[start + static_cast<size_t>(i)] - mean) / divisor;
  }
  return to_like(out, rewards);
}

}  // namespace tessera
