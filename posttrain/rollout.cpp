#include "posttrain/rollout.h"

#include <algorithm>

#include "core/check.h"
#include "core/ops/ops.h"
#include "posttrain/log_probs.h"

namespace tessera {

namespace {
constexpr int64_t kIgnoreIndex = -100;
}  // namespace

RolloutBatch make_rollout_batch(const std::vector<std::vector<int32_t>>& prompts,
                                const std::vector<std::vector<int32_t>>& responses, int32_t pad_id, Device device) {
  TS_CHECK(!prompts.empty() && prompts.size() == responses.size(), "make_rollout_batch: ", prompts.size(),
           " prompts and ", responses.size(), " responses; pass one (non-empty) prompt per response");
  const int64_t n = static_cast<int64_t>(prompts.size());
  RolloutBatch batch;
  int64_t width = 0;
  for (int64_t i = 0; i < n; ++i) {
    TS_CHECK(!prompts[i].empty(), "make_rollout_batch: prompt ", i, " is empty");
    batch.prompt_lengths.push_back(static_cast<int64_t>(prompts[i].size()));
    batch.response_lengths.push_back(static_cast<int64_t>(responses[i].size()));
    width = std::max(width, batch.prompt_lengths.back() + batch.response_lengths.back());
  }
  std::vector<int64_t> tokens(n * width, pad_id), labels(n * width, kIgnoreIndex);
  std::vector<float> mask(n * width, 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    std::vector<int32_t> row = prompts[i];
    row.insert(row.end(), responses[i].begin(), responses[i].end());
    const int64_t length = static_cast<int64_t>(row.size()), prompt_length = batch.prompt_lengths[i];
    for (int64_t t = 0; t < length; ++t) tokens[i * width + t] = row[t];
    for (int64_t t = 0; t + 1 < length; ++t) {
      labels[i * width + t] = row[t + 1];
      mask[i * width + t] = t + 1 >= prompt_length ? 1.0f : 0.0f;
    }
  }
  const Shape shape{n, width};
  batch.tokens = Tensor::from_vector(tokens, shape, device);
  batch.labels = Tensor::from_vector(labels, shape, device);
  batch.response_mask = Tensor::from_vector(mask, shape, device);
  return batch;
}

RolloutBatch slice_rollout_batch(const RolloutBatch& batch, int64_t start, int64_t count) {
  TS_CHECK(start >= 0 && count > 0 && start + count <= batch.rows(), "slice_rollout_batch: rows [", start, ", ",
           start + count, ") outside the batch of ", batch.rows());
  RolloutBatch out;
  int64_t width = 0;
  for (int64_t i = start; i < start + count; ++i) {
    out.prompt_lengths.push_back(batch.prompt_lengths[i]);
    out.response_lengths.push_back(batch.response_lengths[i]);
    width = std::max(width, batch.prompt_lengths[i] + batch.response_lengths[i]);
  }
  out.tokens = batch.tokens.narrow(0, start, count).narrow(1, 0, width).contiguous();
  out.labels = batch.labels.narrow(0, start, count).narrow(1, 0, width).contiguous();
  out.response_mask = batch.response_mask.narrow(0, start, count).narrow(1, 0, width).contiguous();
  return out;
}

std::vector<std::vector<int32_t>> sample_groups(const GptModel& model, const std::vector<std::vector<int32_t>>& prompts,
                                                int64_t group_size, const GenerationOptions& options, int32_t end_token,
                                                Generator& generator) {
  TS_CHECK(group_size >= 1, "sample_groups: group_size must be >= 1, got ", group_size);
  TS_CHECK(options.stop_sequences.size() == 1 && options.stop_sequences[0] == std::vector<int32_t>{end_token},
           "sample_groups: the only stop sequence must be the end token ", end_token,
           " (a response cut by another stop could not be told from one cut by max_new_tokens)");
  std::vector<std::vector<int32_t>> rows;
  rows.reserve(prompts.size() * group_size);
  for (const std::vector<int32_t>& prompt : prompts)
    for (int64_t g = 0; g < group_size; ++g) rows.push_back(prompt);
  std::vector<std::vector<int32_t>> responses = generate(model, rows, options, generator);
  // Fewer than max_new_tokens new tokens: the row stopped at the end token, which generate dropped.
  for (std::vector<int32_t>& response : responses)
    if (static_cast<int64_t>(response.size()) < options.max_new_tokens) response.push_back(end_token);
  return responses;
}

Tensor rollout_log_probs(const GptModel& model, const RolloutBatch& batch, double temperature, Tensor* entropy) {
  TS_CHECK(temperature > 0, "rollout_log_probs: temperature must be > 0, got ", temperature);
  Tensor logits = model.forward(batch.tokens);
  if (temperature != 1.0) logits = logits * (1.0 / temperature);
  const Tensor log_probs = token_log_probs(logits, batch.labels);
  const Tensor mask = batch.response_mask.to(log_probs.dtype());
  if (entropy != nullptr) *entropy = token_entropy(logits.detach()) * batch.response_mask;
  return log_probs * mask;
}

}  // namespace tessera
