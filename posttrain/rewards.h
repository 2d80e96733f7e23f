// Programmatic rewards for RL on verifiable tasks (GRPO, PPO without a reward model): a reward
// function scores a response to a prompt from their text. Any std::function plugs in; the
// built-ins cover the arithmetic tasks, on non-negative integers written in decimal:
//   "addition": the prompt ends with "a+b=" or "a+b?" (whitespace around the numbers allowed, so
//     scripts/make_arithmetic_chat.py's "What is 482 + 1937?" reads); the answer is the first
//     integer of the response; 1 when it equals a + b, else 0.
//   "sorting": every integer of the prompt is an item to sort (e.g. "sort 5 3 9:"); 1 when the
//     response's integers are those items in ascending order, else 0.
//   "arithmetic": make_arithmetic_chat.py's mix: "addition" for a prompt holding '+', else "sorting".
// Format penalty: a response that is not just the answer (the sum; the sorted integers separated
// by spaces or commas), ignoring surrounding whitespace, loses options.format_penalty, so
// "7" scores 1, "7 apples" scores 1 - format_penalty and "apples" scores -format_penalty.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"

namespace tessera {

using RewardFunction = std::function<double(std::string_view prompt, std::string_view response)>;

struct RewardOptions {
  double format_penalty = 0.0;  // >= 0, subtracted from a malformed response's reward
};

RewardFunction addition_reward(const RewardOptions& options = {});
RewardFunction sorting_reward(const RewardOptions& options = {});
RewardFunction arithmetic_reward(const RewardOptions& options = {});
// A built-in by name ("addition", "sorting", "arithmetic"); an unknown name lists the known ones.
RewardFunction reward_function_by_name(const std::string& name, const RewardOptions& options = {});

// The rewards of responses[i] to prompts[i] -> [N] f32 on `device`.
Tensor score_responses(const RewardFunction& reward, const std::vector<std::string>& prompts,
                       const std::vector<std::string>& responses, Device device = Device::cpu());

}  // namespace tessera
