// Rollouts for RL post-training (GRPO, PPO): each prompt's group of sampled responses, and the
// prompt + response rows the policy and the reference score token by token.
//
// Rows: prompt i's tokens, then response i's, right-padded to the longest row with pad_id.
// labels are the tokens shifted by one (labels[t] = tokens[t + 1], -100 past the row's end);
// response_mask[t] is 1 exactly where labels[t] is a response token, so
// token_log_probs(logits, labels) * response_mask are the log-probabilities of the response.
// A response that ended with the end token keeps it: choosing to stop is an action the policy
// is scored on (generation returns the response without its stop sequence; it is put back).
#pragma once

#include <cstdint>
#include <vector>

#include "core/random.h"
#include "core/tensor.h"
#include "models/generation.h"
#include "models/gpt_model.h"

namespace tessera {

struct RolloutBatch {
  Tensor tokens;         // [N, T] i64
  Tensor labels;         // [N, T] i64
  Tensor response_mask;  // [N, T] f32
  std::vector<int64_t> prompt_lengths;
  std::vector<int64_t> response_lengths;  // end token included where the response has one
  int64_t rows() const { return static_cast<int64_t>(prompt_lengths.size()); }
};

// Rows of prompts[i] + responses[i] on `device`. Prompts must be non-empty.
RolloutBatch make_rollout_batch(const std::vector<std::vector<int32_t>>& prompts,
                                const std::vector<std::vector<int32_t>>& responses, int32_t pad_id, Device device);

// Rows [start, start + count) of a batch (a minibatch), trimmed to its own longest row.
RolloutBatch slice_rollout_batch(const RolloutBatch& batch, int64_t start, int64_t count);

// group_size samples of every prompt: response i * group_size + g belongs to prompt i. One
// generate() call over all rows with the KV cache (options.use_cache). options.stop_sequences
// must be exactly {{end_token}}; a response cut by max_new_tokens has no end token.
std::vector<std::vector<int32_t>> sample_groups(const GptModel& model, const std::vector<std::vector<int32_t>>& prompts,
                                                int64_t group_size, const GenerationOptions& options, int32_t end_token,
                                                Generator& generator);

// log p(labels) of each row under softmax(logits / temperature) of `model` [N, T], 0 outside
// the response (differentiable unless called under NoGradGuard). The temperature is the
// sampling one, so the ratio compares the distributions the tokens were drawn from (TRL does
// the same). `entropy`, when given, receives the per-token entropy [N, T] of the same
// distribution (detached, f32), 0 outside the response.
Tensor rollout_log_probs(const GptModel& model, const RolloutBatch& batch, double temperature = 1.0,
                         Tensor* entropy = nullptr);

}  // namespace tessera
