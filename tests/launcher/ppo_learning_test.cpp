// PPO learns, end to end on the CPU: a tiny GPT is first taught single-digit addition by a short
// SFT (tests/launcher/grpo_test_util.h) that leaves it often wrong; PPO with the programmatic
// addition reward, a critic started from the SFT weights and a frozen reference then raises the
// mean reward on held-out prompts (pairs never seen in SFT or PPO), measured before and after with
// the same sampling seed. The reference for "before" is the same model evaluated the same way, so
// the test fails if the updates do not help.
#include <gtest/gtest.h>

#include "launcher/grpo_test_util.h"
#include "launcher/ppo_test_util.h"
#include "launcher/ppo_trainer.h"

namespace tessera {
namespace {

TEST(PpoLearning, HeldOutRewardRisesOverTheSftModel) {
  GptModel actor(testing::grpo_tiny_config(), 7);
  testing::sft_addition(actor, /*steps=*/120, /*lr=*/3e-3, /*seed=*/1);
  std::unique_ptr<RewardModel> critic = testing::critic_from(actor, 8);

  PpoTrainerOptions o;
  o.prompts_per_step = 32;
  o.samples_per_prompt = 2;
  o.micro_batch_size = 32;
  o.num_minibatches = 2;
  o.epochs = 2;
  o.max_new_tokens = 3;
  o.sampling.temperature = 1.0;
  o.kl_coef = 0.01;
  o.gamma = 1.0;
  o.lam = 0.95;
  o.actor_adamw.lr = 5e-4;
  o.actor_adamw.weight_decay = 0.0;
  o.critic_adamw.lr = 1e-3;
  o.critic_adamw.weight_decay = 0.0;
  o.seed = 3;
  PpoTrainer trainer(o, actor, *critic, std::make_unique<FrozenCopyReference>(actor),
                     PpoReward{nullptr, addition_reward(), nullptr}, testing::addition_prompts(false),
                     testing::byte_tokenizer(), nullptr);
  // Each held-out prompt 8 times: the mean reward of sampled answers (what PPO optimizes).
  std::vector<GrpoPrompt> held_out;
  for (int k = 0; k < 8; ++k)
    for (const GrpoPrompt& p : testing::addition_prompts(true)) held_out.push_back(p);
  const SamplingOptions sampling{1.0, 0, 1.0};
  const PpoEvalStats before = trainer.evaluate(held_out, sampling, 99);
  std::vector<PpoStepStats> steps;
  for (int step = 0; step < 30; ++step) steps.push_back(trainer.step());
  const PpoEvalStats after = trainer.evaluate(held_out, sampling, 99);
  std::printf(
      "held-out mean reward %.3f -> %.3f; training reward %.3f (step 1) -> %.3f (step 30), kl %.4f, value loss "
      "%.4f -> %.4f, explained variance %.3f -> %.3f\n",
      before.mean_reward, after.mean_reward, steps.front().mean_reward, steps.back().mean_reward, steps.back().kl,
      steps.front().value_loss, steps.back().value_loss, steps.front().explained_variance,
      steps.back().explained_variance);
  EXPECT_GT(before.mean_reward, 0.05) << "the SFT model should sometimes be right";
  EXPECT_LT(before.mean_reward, 0.8) << "the SFT model should leave room to improve";
  EXPECT_GT(after.mean_reward, before.mean_reward + 0.1);
}

}  // namespace
}  // namespace tessera
