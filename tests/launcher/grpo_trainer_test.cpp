// GRPO's update checked against posttrain's functions applied directly: the trainer's rollout
// (rewards re-scored here, group-normalized advantages from grpo_advantages), and the loss of
// its first update equal to ppo_policy_loss + kl_coef * token mean of k3 computed here on the
// whole minibatch at once (the trainer splits it into micro-batches and weighs them by tokens),
// with the policy moved after sampling so that the ratio differs from 1 and clipping engages,
// and a reference that differs from the policy so the KL term counts. Bad options are one line.
#include "launcher/grpo_trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "launcher/grpo_test_util.h"
#include "posttrain/advantages.h"
#include "posttrain/log_probs.h"
#include "posttrain/losses.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

GrpoTrainerOptions small_options() {
  GrpoTrainerOptions o;
  o.prompts_per_step = 2;
  o.group_size = 4;
  o.micro_batch_size = 2;
  o.num_minibatches = 2;
  o.max_new_tokens = 4;
  o.sampling.temperature = 1.0;
  o.kl_coef = 0.3;
  o.clip_eps = 0.1;
  o.adamw.lr = 1e-3;
  o.seed = 5;
  return o;
}

// Micro-batch tensors [m, T_j] stacked into [sum m, max T_j], zero-padded on the right.
Tensor stack_rows(const std::vector<Tensor>& parts) {
  int64_t rows = 0, width = 0;
  for (const Tensor& p : parts) {
    rows += p.size(0);
    width = std::max(width, p.size(1));
  }
  std::vector<float> out(rows * width, 0.0f);
  int64_t row = 0;
  for (const Tensor& p : parts) {
    const std::vector<float> v = p.to(DType::F32).to_vector<float>();
    for (int64_t r = 0; r < p.size(0); ++r, ++row)
      for (int64_t t = 0; t < p.size(1); ++t) out[row * width + t] = v[r * p.size(1) + t];
  }
  return Tensor::from_vector(out, {rows, width});
}

// A pluggable reward that varies within every group of an untrained model's samples (the
// addition reward would be 0 everywhere, and so would every advantage): the response's length
// in bytes, plus 1 for each digit.
double length_and_digits(std::string_view, std::string_view response) {
  double score = double(response.size());
  for (char c : response) score += (c >= '0' && c <= '9') ? 1.0 : 0.0;
  return score;
}

TEST(GrpoTrainer, FirstUpdateLossIsThePosttrainLossOfTheMinibatch) {
  GptModel policy(testing::grpo_tiny_config(), 1);
  testing::sft_addition(policy, /*steps=*/40, /*lr=*/3e-3, /*seed=*/1);  // answers of 1 to 3 tokens
  const GptModel other(testing::grpo_tiny_config(), 2);
  const GrpoTrainerOptions options = small_options();
  GrpoTrainer trainer(options, policy, std::make_unique<FrozenCopyReference>(other), length_and_digits, nullptr,
                      testing::addition_prompts(false), testing::byte_tokenizer(), nullptr);
  const GrpoRollout rollout = trainer.collect_rollout();
  ASSERT_EQ(rollout.micro_batches.size(), 4u);
  ASSERT_EQ(rollout.responses.size(), 8u);

  // Rewards re-scored from the text, and the advantages of posttrain's GRPO normalization.
  std::vector<float> rewards;
  for (size_t i = 0; i < 8; ++i) {
    EXPECT_EQ(rollout.questions[i], rollout.questions[i / 4 * 4]) << "rows of a group share their prompt";
    rewards.push_back(float(length_and_digits(rollout.questions[i], rollout.responses[i])));
    EXPECT_EQ(rollout.rewards[i], rewards.back());
  }
  const std::vector<float> expected_advantages =
      grpo_advantages(Tensor::from_vector(rewards, {8}), {.group_size = 4}).to_vector<float>();
  for (size_t j = 0; j < 4; ++j) {
    const std::vector<float> a = rollout.micro_batches[j].advantages.to_vector<float>();
    EXPECT_FLOAT_EQ(a[0], expected_advantages[2 * j]);
    EXPECT_FLOAT_EQ(a[1], expected_advantages[2 * j + 1]);
  }

  {  // Move the policy away from the sampler's weights: the ratio is no longer 1.
    NoGradGuard no_grad;
    for (auto& [name, p] : policy.named_parameters())
      if (name == "embedding.word_embeddings.weight") p.mul_(1.6);
  }
  // Minibatch 0 = micro-batches 0 and 1, as one [4, T] batch.
  std::vector<Tensor> lp, old, ref, mask, adv;
  {
    NoGradGuard no_grad;
    for (int j = 0; j < 2; ++j) {
      const GrpoMicroBatch& m = rollout.micro_batches[j];
      lp.push_back(rollout_log_probs(policy, m.batch, options.sampling.temperature));
      old.push_back(m.old_log_probs);
      ref.push_back(m.ref_log_probs);
      mask.push_back(m.batch.response_mask);
      adv.push_back(m.advantages);
    }
  }
  const Tensor logp = stack_rows(lp), response_mask = stack_rows(mask);
  EXPECT_NE(sum(mask[0]).item(), sum(mask[1]).item()) << "micro-batches of equal token counts hide their weighting";
  const PpoPolicyResult policy_loss =
      ppo_policy_loss(logp, stack_rows(old), stack_rows(adv), response_mask, options.clip_eps);
  const double expected =
      policy_loss.loss.item() +
      options.kl_coef * masked_mean(kl_penalty(logp, stack_rows(ref), KlEstimator::K3), response_mask).item();
  EXPECT_GT(policy_loss.clip_fraction.item(), 0.0) << "clipping is not exercised";
  EXPECT_LT(policy_loss.clip_fraction.item(), 1.0) << "the unclipped branch is not exercised";
  EXPECT_GT(masked_mean(kl_penalty(logp, stack_rows(ref), KlEstimator::K3), response_mask).item(), 1e-3);

  const GrpoStepStats stats = trainer.train_on(rollout);
  ASSERT_EQ(stats.update_losses.size(), 2u);
  EXPECT_NEAR(stats.update_losses[0], expected, 1e-5);
  EXPECT_NE(stats.update_losses[1], stats.update_losses[0]);
  EXPECT_EQ(stats.step, 1);
  EXPECT_GT(stats.response_length, 0.0);
  EXPECT_LE(stats.response_length, 4.0);
}

TEST(GrpoTrainer, BadOptionsNameTheirKey) {
  auto message = [](const GrpoTrainerOptions& o, int64_t ranks) {
    try {
      validate(o, ranks);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  GrpoTrainerOptions o = small_options();
  EXPECT_EQ(message(o, 1), "no error");
  o.group_size = 1;
  EXPECT_THAT(message(o, 1), HasSubstr("grpo.group_size must be >= 2"));
  o = small_options();
  EXPECT_THAT(message(o, 4), HasSubstr("train.global_batch_size (prompts per step) 2 must be a positive multiple"));
  o.num_minibatches = 3;
  EXPECT_THAT(message(o, 1), HasSubstr("grpo.num_minibatches 3 must divide"));
  o = small_options();
  o.micro_batch_size = 3;
  EXPECT_THAT(message(o, 1), HasSubstr("train.micro_batch_size 3 must divide"));
  o = small_options();
  o.sampling.temperature = 0.0;
  EXPECT_THAT(message(o, 1), HasSubstr("grpo.temperature must be > 0"));
}

// The recipe's default reward on scripts/make_arithmetic_chat.py's questions, by hand.
TEST(GrpoTrainer, ArithmeticRewardReadsTheChatQuestions) {
  const RewardFunction reward = reward_function_by_name("arithmetic", {.format_penalty = 0.25});
  EXPECT_EQ(reward("What is 482 + 1937?", "2419"), 1.0);
  EXPECT_EQ(reward("What is 482 + 1937?", "2429"), 0.0);
  EXPECT_EQ(reward("What is 482 + 1937?", "2419 apples"), 0.75);
  EXPECT_EQ(reward("12+34=", "46"), 1.0);
  EXPECT_EQ(reward("Sort in ascending order: 7, 31, 4", "4, 7, 31"), 1.0);
  EXPECT_EQ(reward("Sort in ascending order: 7, 31, 4", "7, 4, 31"), 0.0);
  EXPECT_EQ(reward("Sort in ascending order: 7, 31, 4", "sorted: 4, 7, 31"), 0.75);
  EXPECT_EQ(reward("What is 482 times 3?", "3 482"), 1.0);  // no '+': a list to sort
  EXPECT_THROW(reward("Sort these", "1"), Error);
}

}  // namespace
}  // namespace tessera
