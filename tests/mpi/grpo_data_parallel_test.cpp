// GRPO's data parallelism as real ranks (mpirun -np 2 and 4): each rank samples its own prompts,
// and the update equals one computed here independently: every rank's loss on its rows with
// posttrain's functions, weighted by the minibatch's token count over all ranks, backpropagated
// through an identical twin of the policy, its gradients summed over the ranks by hand and fed
// to a fresh AdamW. The trainer's weights must match the twin's on every rank (so they also agree
// with each other), and its logged loss must be the sum of the ranks' losses.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "launcher/grpo_test_util.h"
#include "launcher/grpo_trainer.h"
#include "parallel/mpi_communicator.h"
#include "posttrain/log_probs.h"
#include "posttrain/losses.h"

namespace tessera {
namespace {

double length_and_digits(std::string_view, std::string_view response) {
  double score = double(response.size());
  for (char c : response) score += (c >= '0' && c <= '9') ? 1.0 : 0.0;
  return score;
}

TEST(GrpoDataParallel, UpdateEqualsTheRanksLossesSummed) {
  MpiCommunicator world(MPI_COMM_WORLD, "world");
  GrpoTrainerOptions o;
  o.prompts_per_step = 4;  // 2 per rank on 2 ranks, 1 on 4
  o.group_size = 4;
  o.micro_batch_size = 2;
  o.num_minibatches = 1;
  o.max_new_tokens = 4;
  o.kl_coef = 0.3;
  o.clip_grad = 0.0;
  o.adamw.lr = 1e-3;
  o.seed = 9;
  GptModel policy(testing::grpo_tiny_config(), 1), twin(testing::grpo_tiny_config(), 1);
  const GptModel reference(testing::grpo_tiny_config(), 2);
  GrpoTrainer trainer(o, policy, std::make_unique<FrozenCopyReference>(reference), length_and_digits, nullptr,
                      testing::addition_prompts(false), testing::byte_tokenizer(), &world);
  const GrpoRollout rollout = trainer.collect_rollout();
  ASSERT_EQ(int64_t(rollout.responses.size()), o.prompts_per_step / world.size() * o.group_size);

  // Independently: this rank's token-weighted loss through the twin, gradients summed by hand.
  double local_tokens = 0;
  for (const GrpoMicroBatch& m : rollout.micro_batches)
    for (int64_t length : m.batch.response_lengths) local_tokens += double(length);
  Tensor tokens = Tensor::from_vector(std::vector<double>{local_tokens}, {1});
  world.all_reduce(tokens, ReduceOp::Sum);
  const double total_tokens = tokens.item();
  twin.eval();
  double local_loss = 0;
  for (const GrpoMicroBatch& m : rollout.micro_batches) {
    const Tensor logp = rollout_log_probs(twin, m.batch, o.sampling.temperature);
    const Tensor loss =
        ppo_policy_loss(logp, m.old_log_probs, m.advantages, m.batch.response_mask, o.clip_eps).loss +
        o.kl_coef * masked_mean(kl_penalty(logp, m.ref_log_probs, KlEstimator::K3), m.batch.response_mask);
    double micro_tokens = 0;
    for (int64_t length : m.batch.response_lengths) micro_tokens += double(length);
    (loss * (micro_tokens / total_tokens)).backward();
    local_loss += loss.item() * micro_tokens / total_tokens;
  }
  std::vector<Tensor> twin_parameters = twin.parameters();
  for (Tensor& p : twin_parameters) {
    Tensor grad = p.grad();
    world.all_reduce(grad, ReduceOp::Sum);
  }
  AdamW optimizer(twin_parameters, o.adamw);
  optimizer.step();
  Tensor loss_sum = Tensor::from_vector(std::vector<double>{local_loss}, {1});
  world.all_reduce(loss_sum, ReduceOp::Sum);

  const GrpoStepStats stats = trainer.train_on(rollout);
  ASSERT_EQ(stats.update_losses.size(), 1u);
  EXPECT_NEAR(stats.update_losses[0], loss_sum.item(), 1e-6);
  const auto trained = policy.named_parameters(), expected = twin.named_parameters();
  for (size_t i = 0; i < trained.size(); ++i) {
    const std::vector<float> a = trained[i].second.to_vector<float>(), b = expected[i].second.to_vector<float>();
    double worst = 0;
    for (size_t k = 0; k < a.size(); ++k) worst = std::max(worst, double(std::abs(a[k] - b[k])));
    EXPECT_LT(worst, 1e-6) << trained[i].first << " on rank " << world.rank();
  }
  // The step moved the weights (the comparison above is not between two untouched models).
  const GptModel start(testing::grpo_tiny_config(), 1);
  EXPECT_NE(start.parameters()[0].to_vector<float>(), policy.parameters()[0].to_vector<float>());
}

}  // namespace
}  // namespace tessera
