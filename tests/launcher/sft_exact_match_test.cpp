// SFT raises exact-match accuracy on held-out arithmetic, end to end on the CPU: a tiny GPT from
// random weights answers (almost) no held-out sum; after supervised fine-tuning on chat-rendered
// training sums, with the loss on the assistant's answer only (tests/launcher/grpo_test_util.h),
// its greedy answers to sums it never saw are exactly right far more often. Answers are decoded
// greedily through the KV cache and scored by the programmatic addition reward (exact match).
#include <gtest/gtest.h>

#include <cstdio>

#include "launcher/grpo_test_util.h"
#include "launcher/grpo_trainer.h"

namespace tessera {
namespace {

TEST(SftLearning, RaisesExactMatchAccuracyOnHeldOutSums) {
  GptModel model(testing::grpo_tiny_config(), 7);
  GrpoTrainerOptions options;  // only its evaluate() is used: no reference, no updates
  options.kl_coef = 0.0;
  options.max_new_tokens = 3;
  GrpoTrainer evaluator(options, model, nullptr, addition_reward(), nullptr, testing::addition_prompts(false),
                        testing::byte_tokenizer(), nullptr);
  const std::vector<GrpoPrompt> held_out = testing::addition_prompts(true);
  const SamplingOptions greedy{0.0, 0, 1.0};
  const GrpoEvalStats before = evaluator.evaluate(held_out, greedy, 1);
  testing::sft_addition(model, /*steps=*/120, /*lr=*/3e-3, /*seed=*/1);
  const GrpoEvalStats after = evaluator.evaluate(held_out, greedy, 1);
  std::printf("held-out exact match (greedy, %ld sums): %.3f before SFT, %.3f after\n", long(after.samples),
              before.accuracy, after.accuracy);
  EXPECT_LT(before.accuracy, 0.05) << "random weights should not know the sums";
  EXPECT_GT(after.accuracy, before.accuracy + 0.1);
}

}  // namespace
}  // namespace tessera
