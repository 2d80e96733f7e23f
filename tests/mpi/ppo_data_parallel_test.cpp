// PPO's data parallelism as real ranks (mpirun -np 2 and 4): each rank samples its own prompts.
// Checked independently here: the advantages are whitened over every response token of the step
// on all ranks (their global masked mean is 0 and unbiased variance 1, which per-rank whitening
// would miss: it gives (N - ranks) / (N - 1)); and one update equals the one computed here:
// every rank's policy and value losses on its rows with posttrain's functions, weighted by the
// minibatch's token count over all ranks, backpropagated through identical twins of the actor and
// the critic, their gradients summed over the ranks by hand and fed to fresh AdamWs. The
// trainer's weights must match the twins' on every rank, and its logged losses the ranks' sums.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/ops/ops.h"
#include "launcher/grpo_test_util.h"
#include "launcher/ppo_test_util.h"
#include "launcher/ppo_trainer.h"
#include "parallel/mpi_communicator.h"
#include "posttrain/losses.h"
#include "posttrain/rollout_scores.h"

namespace tessera {
namespace {

double length_and_digits(std::string_view, std::string_view response) {
  double score = double(response.size());
  for (char c : response) score += (c >= '0' && c <= '9') ? 1.0 : 0.0;
  return score;
}

double sum_over(MpiCommunicator& world, double value) {
  Tensor t = Tensor::from_vector(std::vector<double>{value}, {1});
  world.all_reduce(t, ReduceOp::Sum);
  return t.item();
}

void expect_same_weights(const std::vector<std::pair<std::string, Tensor>>& trained,
                         const std::vector<std::pair<std::string, Tensor>>& expected, int rank) {
  ASSERT_EQ(trained.size(), expected.size());
  for (size_t i = 0; i < trained.size(); ++i) {
    const std::vector<float> a = trained[i].second.to_vector<float>(), b = expected[i].second.to_vector<float>();
    double worst = 0;
    for (size_t k = 0; k < a.size(); ++k) worst = std::max(worst, double(std::abs(a[k] - b[k])));
    EXPECT_LT(worst, 1e-6) << trained[i].first << " on rank " << rank;
  }
}

TEST(PpoDataParallel, WhiteningIsGlobalAndTheUpdateEqualsTheRanksLossesSummed) {
  MpiCommunicator world(MPI_COMM_WORLD, "world");
  PpoTrainerOptions o;
  o.prompts_per_step = 8;  // 4 per rank on 2 ranks, 2 on 4
  o.samples_per_prompt = 1;
  o.micro_batch_size = 1;
  o.num_minibatches = 1;
  o.max_new_tokens = 4;
  o.kl_coef = 0.3;
  o.gamma = 0.9;
  o.lam = 0.8;
  o.clip_grad = 0.0;
  o.actor_adamw.lr = 1e-3;
  o.critic_adamw.lr = 2e-3;
  o.seed = 9;
  GptModel actor(testing::grpo_tiny_config(), 1), actor_twin(testing::grpo_tiny_config(), 1);
  std::unique_ptr<RewardModel> critic = testing::critic_from(actor, 4), critic_twin = testing::critic_from(actor, 4);
  const GptModel reference(testing::grpo_tiny_config(), 2);
  PpoTrainer trainer(o, actor, *critic, std::make_unique<FrozenCopyReference>(reference),
                     PpoReward{nullptr, length_and_digits, nullptr}, testing::addition_prompts(false),
                     testing::byte_tokenizer(), &world);
  const PpoRollout rollout = trainer.collect_rollout();
  ASSERT_EQ(int64_t(rollout.responses.size()), o.prompts_per_step / world.size());

  double local_tokens = 0, a_sum = 0, a_squares = 0;
  for (const PpoMicroBatch& m : rollout.micro_batches) {
    for (int64_t length : m.batch.response_lengths) local_tokens += double(length);
    a_sum += sum(m.advantages).item();
    a_squares += sum(m.advantages * m.advantages).item();
  }
  const double n = sum_over(world, local_tokens), mean = sum_over(world, a_sum) / n;
  EXPECT_NEAR(mean, 0.0, 1e-5);
  EXPECT_NEAR((sum_over(world, a_squares) - n * mean * mean) / (n - 1), 1.0, 1e-4);

  // Independently: this rank's token-weighted losses through the twins, gradients summed by hand.
  actor_twin.eval();
  critic_twin->train(false);
  double policy_loss = 0, value_loss = 0;
  for (const PpoMicroBatch& m : rollout.micro_batches) {
    double micro_tokens = 0;
    for (int64_t length : m.batch.response_lengths) micro_tokens += double(length);
    const Tensor policy = ppo_policy_loss(rollout_log_probs(actor_twin, m.batch, o.sampling.temperature),
                                          m.old_log_probs, m.advantages, m.batch.response_mask, o.clip_eps)
                              .loss;
    const Tensor value = ppo_value_loss(rollout_values(*critic_twin, m.batch), m.old_values, m.returns,
                                        m.batch.response_mask, o.value_clip)
                             .loss;
    (policy * (micro_tokens / n)).backward();
    (value * (micro_tokens / n)).backward();
    policy_loss += policy.item() * micro_tokens / n;
    value_loss += value.item() * micro_tokens / n;
  }
  auto step = [&](std::vector<Tensor> parameters, const AdamWOptions& options) {
    for (Tensor& p : parameters)
      if (p.grad().defined()) {  // a critic's untied output layer is unused: no gradient
        Tensor grad = p.grad();
        world.all_reduce(grad, ReduceOp::Sum);
      }
    AdamW(parameters, options).step();
  };
  step(actor_twin.parameters(), o.actor_adamw);
  step(critic_twin->parameters(), o.critic_adamw);

  const PpoStepStats stats = trainer.train_on(rollout);
  ASSERT_EQ(stats.policy_losses.size(), 1u);
  EXPECT_NEAR(stats.policy_losses[0], sum_over(world, policy_loss), 1e-6);
  EXPECT_NEAR(stats.value_losses[0], sum_over(world, value_loss), 1e-6);
  expect_same_weights(actor.named_parameters(), actor_twin.named_parameters(), world.rank());
  expect_same_weights(critic->named_parameters(), critic_twin->named_parameters(), world.rank());
  // The step moved the weights (the comparison above is not between two untouched models).
  const GptModel start(testing::grpo_tiny_config(), 1);
  EXPECT_NE(start.parameters()[0].to_vector<float>(), actor.parameters()[0].to_vector<float>());
  EXPECT_NE(testing::critic_from(start, 4)->head().weight().to_vector<float>(),
            critic->head().weight().to_vector<float>());
}

}  // namespace
}  // namespace tessera
