#include "posttrain/rewards.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>

#include "core/check.h"

namespace tessera {

namespace {

bool is_digit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }
bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Every maximal run of digits as a number; a run too long for int64 is nullopt (never correct).
std::vector<std::optional<int64_t>> integers(std::string_view s) {
  std::vector<std::optional<int64_t>> out;
  size_t i = 0;
  while (i < s.size()) {
    if (!is_digit(s[i])) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < s.size() && is_digit(s[end])) ++end;
    int64_t value = 0;
    auto [ptr, error] = std::from_chars(s.data() + i, s.data() + end, value);
    out.push_back(error == std::errc() ? std::optional<int64_t>(value) : std::nullopt);
    i = end;
  }
  return out;
}

// True when s (trimmed) is only integers separated by spaces or commas (at least one integer).
bool only_integer_list(std::string_view s) {
  s = trim(s);
  if (s.empty()) return false;
  bool previous_digit = false;
  for (char c : s) {
    if (is_digit(c)) {
      previous_digit = true;
    } else if (c == ',' || is_space(c)) {
      previous_digit = false;
    } else {
      return false;
    }
  }
  return previous_digit;
}

void check_options(const RewardOptions& options) {
  TS_CHECK(options.format_penalty >= 0, "reward function: format_penalty must be >= 0, got ", options.format_penalty);
}

// a and b of a prompt ending in "a+b=" or "a+b?", or nullopt.
std::optional<std::pair<int64_t, int64_t>> addition_operands(std::string_view prompt) {
  prompt = trim(prompt);
  if (prompt.empty() || (prompt.back() != '=' && prompt.back() != '?')) return std::nullopt;
  prompt.remove_suffix(1);
  size_t plus = prompt.rfind('+');
  if (plus == std::string_view::npos) return std::nullopt;
  std::string_view a_text = trim(prompt.substr(0, plus)), b_text = trim(prompt.substr(plus + 1));
  size_t a_start = a_text.size();
  while (a_start > 0 && is_digit(a_text[a_start - 1])) --a_start;
  a_text = a_text.substr(a_start);
  if (a_text.empty() || b_text.empty() || !std::all_of(b_text.begin(), b_text.end(), is_digit)) return std::nullopt;
  std::vector<std::optional<int64_t>> a = integers(a_text), b = integers(b_text);
  if (!a[0] || !b[0]) return std::nullopt;
  return std::make_pair(*a[0], *b[0]);
}

}  // namespace

RewardFunction addition_reward(const RewardOptions& options) {
  check_options(options);
  return [options](std::string_view prompt, std::string_view response) {
    std::optional<std::pair<int64_t, int64_t>> operands = addition_operands(prompt);
    TS_CHECK(operands.has_value(), "addition reward: prompt \"", prompt,
             "\" does not end in \"a+b=\" or \"a+b?\" with non-negative integers a and b");
    std::vector<std::optional<int64_t>> found = integers(response);
    bool correct = !found.empty() && found[0] && *found[0] == operands->first + operands->second;
    std::string_view answer = trim(response);
    bool well_formed = !answer.empty() && std::all_of(answer.begin(), answer.end(), is_digit);
    return (correct ? 1.0 : 0.0) - (well_formed ? 0.0 : options.format_penalty);
  };
}

RewardFunction sorting_reward(const RewardOptions& options) {
  check_options(options);
  return [options](std::string_view prompt, std::string_view response) {
    std::vector<std::optional<int64_t>> items = integers(prompt);
    TS_CHECK(!items.empty() && std::all_of(items.begin(), items.end(), [](const auto& v) { return v.has_value(); }),
             "sorting reward: prompt \"", prompt, "\" holds no list of integers to sort");
    std::sort(items.begin(), items.end());
    bool correct = integers(response) == items;
    return (correct ? 1.0 : 0.0) - (only_integer_list(response) ? 0.0 : options.format_penalty);
  };
}

RewardFunction arithmetic_reward(const RewardOptions& options) {
  RewardFunction addition = addition_reward(options), sorting = sorting_reward(options);
  return [addition, sorting](std::string_view prompt, std::string_view response) {
    return prompt.find('+') != std::string_view::npos ? addition(prompt, response) : sorting(prompt, response);
  };
}

RewardFunction reward_function_by_name(const std::string& name, const RewardOptions& options) {
  if (name == "addition") return addition_reward(options);
  if (name == "sorting") return sorting_reward(options);
  if (name == "arithmetic") return arithmetic_reward(options);
  TS_CHECK(false, "unknown reward function '", name, "'; the built-ins are: addition, sorting, arithmetic");
  return {};
}

Tensor score_responses(const RewardFunction& reward, const std::vector<std::string>& prompts,
                       const std::vector<std::string>& responses, Device device) {
  TS_CHECK(reward != nullptr, "score_responses: the reward function is empty");
  TS_CHECK(prompts.size() == responses.size(), "score_responses: ", prompts.size(), " prompts but ", responses.size(),
           " responses; pass one response per prompt (repeat a prompt for each sample of its group)");
  std::vector<float> scores(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) scores[i] = static_cast<float>(reward(prompts[i], responses[i]));
  return Tensor::from_vector(scores, {static_cast<int64_t>(scores.size())}).to(device);
}

}  // namespace tessera
