// PPO's rollout and first update checked against posttrain's functions applied directly in the
// test: scores re-scored from the text (plus a reward model's score of the rows), reference and
// actor log-probs and the critic's values recomputed here from the models, per-token rewards with
// the k1 KL penalty, GAE and whitening over the whole rollout at once (the trainer runs them per
// micro-batch and whitens with moments summed over micro-batches), and the first minibatch's
// policy and value losses equal to ppo_policy_loss / ppo_value_loss on the stacked minibatch. The
// actor and the critic are moved after the rollout so that ratio clipping and value clipping
// both engage. Bad options fail in one line naming their key.
#include "launcher/ppo_trainer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "launcher/grpo_test_util.h"
#include "launcher/ppo_test_util.h"
#include "posttrain/advantages.h"
#include "posttrain/log_probs.h"
#include "posttrain/losses.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

PpoTrainerOptions small_options() {
  PpoTrainerOptions o;
  o.prompts_per_step = 8;
  o.samples_per_prompt = 1;
  o.micro_batch_size = 2;
  o.num_minibatches = 2;
  o.max_new_tokens = 4;
  o.sampling.temperature = 1.0;
  o.kl_coef = 0.3;
  o.clip_eps = 0.1;
  o.value_clip = 0.05;
  o.gamma = 0.9;
  o.lam = 0.8;
  o.actor_adamw.lr = 1e-3;
  o.critic_adamw.lr = 1e-3;
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

void expect_near(const Tensor& actual, const Tensor& expected, double tolerance, const char* what) {
  const std::vector<float> a = actual.to_vector<float>(), e = expected.to_vector<float>();
  ASSERT_EQ(a.size(), e.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], e[i], tolerance) << what << " element " << i;
}

// A pluggable reward that varies over an untrained model's samples: length in bytes + 1 per digit.
double length_and_digits(std::string_view, std::string_view response) {
  double score = double(response.size());
  for (char c : response) score += (c >= '0' && c <= '9') ? 1.0 : 0.0;
  return score;
}

// The critic's values computed here from its parts: head(backbone hidden) on response positions.
Tensor critic_values(const RewardModel& critic, const RolloutBatch& batch) {
  return critic.head().values(critic.backbone().forward_hidden(batch.tokens)) * batch.response_mask;
}

TEST(PpoTrainer, RolloutAndFirstUpdateArePosttrainsFunctions) {
  GptModel actor(testing::grpo_tiny_config(), 1);
  testing::sft_addition(actor, /*steps=*/40, /*lr=*/3e-3, /*seed=*/1);  // answers of 1 to 3 tokens
  const GptModel other(testing::grpo_tiny_config(), 2);
  std::unique_ptr<RewardModel> critic = testing::critic_from(actor, 11);
  const RewardModel reward_model(testing::grpo_tiny_config(), 13);
  const PpoTrainerOptions options = small_options();
  PpoTrainer trainer(options, actor, *critic, std::make_unique<FrozenCopyReference>(other),
                     PpoReward{&reward_model, length_and_digits, nullptr}, testing::addition_prompts(false),
                     testing::byte_tokenizer(), nullptr);
  const PpoRollout rollout = trainer.collect_rollout();
  ASSERT_EQ(rollout.micro_batches.size(), 4u);
  ASSERT_EQ(rollout.responses.size(), 8u);

  std::vector<Tensor> old, ref, values, mask, advantages, returns, scores;
  {
    NoGradGuard no_grad;
    for (const PpoMicroBatch& m : rollout.micro_batches) {
      const RolloutBatch& b = m.batch;
      old.push_back(rollout_log_probs(actor, b, options.sampling.temperature));
      ref.push_back(rollout_log_probs(other, b, options.sampling.temperature));
      values.push_back(critic_values(*critic, b));
      mask.push_back(b.response_mask);
      advantages.push_back(m.advantages);
      returns.push_back(m.returns);
      scores.push_back(m.scores);
      std::vector<int64_t> lengths;
      for (int64_t i = 0; i < b.rows(); ++i) lengths.push_back(b.prompt_lengths[i] + b.response_lengths[i]);
      const std::vector<float> model_scores = reward_model.rewards(b.tokens, lengths).to_vector<float>();
      const std::vector<float> got = m.scores.to_vector<float>();
      for (int64_t i = 0; i < b.rows(); ++i) {
        const size_t row = size_t(&m - rollout.micro_batches.data()) * 2 + size_t(i);
        EXPECT_NEAR(got[size_t(i)],
                    length_and_digits(rollout.questions[row], rollout.responses[row]) + model_scores[size_t(i)], 1e-5);
      }
      expect_near(m.old_log_probs, old.back(), 1e-6, "old log-probs");
      expect_near(m.ref_log_probs, ref.back(), 1e-6, "reference log-probs");
      expect_near(m.old_values, values.back(), 1e-6, "values");
    }
  }
  EXPECT_NE(sum(mask[0]).item(), sum(mask[1]).item()) << "micro-batches of equal token counts hide their weighting";
  const Tensor all_mask = stack_rows(mask), all_values = stack_rows(values);
  const Tensor all_scores = cat(scores, 0);
  const Tensor kl = (stack_rows(old) - stack_rows(ref)) * all_mask;
  EXPECT_GT(masked_mean(abs(kl), all_mask).item(), 1e-3) << "the KL penalty does not count";
  const GaeResult expected = gae(ppo_token_rewards(all_scores, kl, all_mask, options.kl_coef), all_values, all_mask,
                                 options.gamma, options.lam);
  expect_near(stack_rows(returns), expected.returns, 1e-5, "returns");
  expect_near(stack_rows(advantages), whiten(expected.advantages, all_mask), 1e-5, "whitened advantages");

  {  // Move both models away from the rollout's: ratios differ from 1 and values from old values.
    NoGradGuard no_grad;
    for (auto& [name, p] : actor.named_parameters())
      if (name == "embedding.word_embeddings.weight") p.mul_(1.6);
    for (auto& [name, p] : critic->named_parameters())
      if (name == "score.weight") p.mul_(-1.0);  // values flip sign: toward some returns, away from others
  }
  std::vector<Tensor> lp, v;
  {
    NoGradGuard no_grad;
    for (int j = 0; j < 2; ++j) {
      lp.push_back(rollout_log_probs(actor, rollout.micro_batches[j].batch, options.sampling.temperature));
      v.push_back(critic_values(*critic, rollout.micro_batches[j].batch));
    }
  }
  auto first_two = [](const std::vector<Tensor>& parts) { return stack_rows({parts[0], parts[1]}); };
  const Tensor m0 = first_two(mask);
  const PpoPolicyResult policy =
      ppo_policy_loss(stack_rows(lp), first_two(old), first_two(advantages), m0, options.clip_eps);
  const PpoValueResult value =
      ppo_value_loss(stack_rows(v), first_two(values), first_two(returns), m0, options.value_clip);
  EXPECT_GT(policy.clip_fraction.item(), 0.0) << "ratio clipping is not exercised";
  EXPECT_LT(policy.clip_fraction.item(), 1.0) << "the unclipped policy branch is not exercised";
  EXPECT_GT(value.clip_fraction.item(), 0.0) << "value clipping is not exercised";
  EXPECT_LT(value.clip_fraction.item(), 1.0) << "the unclipped value branch is not exercised";

  const PpoStepStats stats = trainer.train_on(rollout);
  ASSERT_EQ(stats.policy_losses.size(), 2u);
  ASSERT_EQ(stats.value_losses.size(), 2u);
  EXPECT_NEAR(stats.policy_losses[0], policy.loss.item(), 1e-5);
  EXPECT_NEAR(stats.value_losses[0], value.loss.item(), 1e-5);
  EXPECT_NE(stats.policy_losses[1], stats.policy_losses[0]);
  EXPECT_EQ(stats.step, 1);
  EXPECT_NEAR(stats.kl, sum(kl).item() / sum(all_mask).item(), 1e-5);
  EXPECT_GT(stats.response_length, 0.0);
  EXPECT_LE(stats.response_length, 4.0);
}

TEST(PpoTrainer, BadOptionsNameTheirKey) {
  auto message = [](const PpoTrainerOptions& o, int64_t ranks) {
    try {
      validate(o, ranks);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  PpoTrainerOptions o = small_options();
  EXPECT_EQ(message(o, 1), "no error");
  EXPECT_THAT(message(o, 3), HasSubstr("train.global_batch_size (prompts per step) 8 must be a positive multiple"));
  o.num_minibatches = 3;
  EXPECT_THAT(message(o, 1), HasSubstr("ppo.num_minibatches 3 must divide"));
  o = small_options();
  o.micro_batch_size = 3;
  EXPECT_THAT(message(o, 1), HasSubstr("train.micro_batch_size 3 must divide"));
  o = small_options();
  o.sampling.temperature = 0.0;
  EXPECT_THAT(message(o, 1), HasSubstr("ppo.temperature must be > 0"));
  o = small_options();
  o.gamma = 0.0;
  EXPECT_THAT(message(o, 1), HasSubstr("ppo.gamma must be in (0, 1]"));
}

TEST(PpoTrainer, NoRewardSourceIsRefused) {
  GptModel actor(testing::grpo_tiny_config(), 1);
  std::unique_ptr<RewardModel> critic = testing::critic_from(actor, 11);
  try {
    PpoTrainer trainer(small_options(), actor, *critic, std::make_unique<FrozenCopyReference>(actor), PpoReward{},
                       testing::addition_prompts(false), testing::byte_tokenizer(), nullptr);
    FAIL() << "a trainer without a reward was built";
  } catch (const Error& e) {
    EXPECT_THAT(std::string(e.what()), HasSubstr("PPO: no reward: set ppo.reward_model"));
  }
}

}  // namespace
}  // namespace tessera
