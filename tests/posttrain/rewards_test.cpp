// The built-in programmatic rewards on hand-written prompts and responses: correct, wrong,
// malformed (with and without the format penalty), and prompts they cannot read.
#include "posttrain/rewards.h"

#include <gtest/gtest.h>

namespace tessera {
namespace {

TEST(AdditionReward, ExactMatchOfTheFirstIntegerOfTheResponse) {
  RewardFunction reward = addition_reward();
  EXPECT_EQ(reward("12+34=", "46"), 1.0);
  EXPECT_EQ(reward("Q: 12 + 34 =", " 46\n"), 1.0);
  EXPECT_EQ(reward("12+34=", "47"), 0.0);
  EXPECT_EQ(reward("12+34=", "46 is the answer"), 1.0);  // no penalty by default
  EXPECT_EQ(reward("12+34=", "4 6"), 0.0);
  EXPECT_EQ(reward("12+34=", ""), 0.0);
  EXPECT_EQ(reward("999999999+1=", "1000000000"), 1.0);
  EXPECT_EQ(reward("1+1=", "99999999999999999999999"), 0.0);  // too long for int64: wrong, not an error
  EXPECT_THROW(reward("12*34=", "408"), Error);
  EXPECT_THROW(reward("12+34", "46"), Error);
}

TEST(AdditionReward, FormatPenaltyForAnythingButTheNumber) {
  RewardFunction reward = addition_reward({.format_penalty = 0.25});
  EXPECT_EQ(reward("2+3=", "5"), 1.0);
  EXPECT_EQ(reward("2+3=", "5."), 0.75);
  EXPECT_EQ(reward("2+3=", "6"), 0.0);
  EXPECT_EQ(reward("2+3=", "six"), -0.25);
  EXPECT_THROW(addition_reward({.format_penalty = -1.0}), Error);
}

TEST(SortingReward, TheResponseIntegersMustBeThePromptsSorted) {
  RewardFunction reward = sorting_reward({.format_penalty = 0.5});
  EXPECT_EQ(reward("sort 5 3 9 3:", "3 3 5 9"), 1.0);
  EXPECT_EQ(reward("sort 5 3 9 3:", "3, 3, 5, 9"), 1.0);
  EXPECT_EQ(reward("sort 5 3 9 3:", "3 5 9"), 0.0);      // a duplicate dropped
  EXPECT_EQ(reward("sort 5 3 9 3:", "9 5 3 3"), 0.0);    // descending
  EXPECT_EQ(reward("sort 5 3 9 3:", "[3 3 5 9]"), 0.5);  // right, malformed
  EXPECT_EQ(reward("sort 5 3 9 3:", "no idea"), -0.5);
  EXPECT_THROW(reward("sort these:", "1"), Error);
}

TEST(Rewards, ByNameAndScoredAsATensor) {
  EXPECT_EQ(reward_function_by_name("addition")("1+2=", "3"), 1.0);
  EXPECT_EQ(reward_function_by_name("sorting")("2 1", "1 2"), 1.0);
  EXPECT_THROW(reward_function_by_name("addtion"), Error);
  // Any callable plugs in.
  RewardFunction length = [](std::string_view, std::string_view response) { return double(response.size()); };
  Tensor scores = score_responses(length, {"a", "b", "c"}, {"", "xy", "xyz"});
  EXPECT_EQ(scores.shape(), (Shape{3}));
  EXPECT_EQ(scores.to_vector<float>(), (std::vector<float>{0, 2, 3}));
  EXPECT_THROW(score_responses(length, {"a"}, {"x", "y"}), Error);
}

}  // namespace
}  // namespace tessera
