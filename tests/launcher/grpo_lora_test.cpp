// GRPO on a LoRA policy whose KL reference is the same model with its adapters off
// (LoraBaseReference): the rollout's reference log-probs equal those of a separate plain model
// holding the base, the first update's loss equals ppo_policy_loss + kl_coef * token mean of k3
// computed here against that plain model (as grpo_trainer_test does against a copy), only the
// adapters are optimized, and the base weights are bitwise unchanged by the updates.
#include <gtest/gtest.h>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "launcher/grpo_test_util.h"
#include "launcher/grpo_trainer.h"
#include "launcher/lora_run.h"
#include "models/lora.h"
#include "posttrain/log_probs.h"
#include "posttrain/losses.h"

namespace tessera {
namespace {

bool is_adapter(const std::string& name) { return name.find(".adapter.") != std::string::npos; }

// Micro-batch tensors [m, T_j] stacked into [sum m, max T_j], zero-padded on the right.
Tensor stack_rows(const std::vector<Tensor>& parts) {
  int64_t rows = 0, width = 0;
  for (const Tensor& p : parts) {
    rows += p.size(0);
    width = std::max(width, p.size(1));
  }
  std::vector<float> out(size_t(rows * width), 0.0f);
  int64_t row = 0;
  for (const Tensor& p : parts) {
    const std::vector<float> v = p.to(DType::F32).to_vector<float>();
    for (int64_t r = 0; r < p.size(0); ++r, ++row)
      for (int64_t t = 0; t < p.size(1); ++t) out[size_t(row * width + t)] = v[size_t(r * p.size(1) + t)];
  }
  return Tensor::from_vector(out, {rows, width});
}

double length_and_digits(std::string_view, std::string_view response) {
  double score = double(response.size());
  for (char c : response) score += (c >= '0' && c <= '9') ? 1.0 : 0.0;
  return score;
}

TEST(GrpoLora, FirstUpdateLossIsThePosttrainLossAgainstThePlainBase) {
  GptModel base(testing::grpo_tiny_config(), 1);
  testing::sft_addition(base, /*steps=*/40, /*lr=*/3e-3, /*seed=*/1);
  std::map<std::string, SavedParameter> saved;
  for (const auto& [name, value] : base.named_parameters()) saved[name] = {value.detach().clone(), DType::F32};
  TransformerConfig config = testing::grpo_tiny_config();
  config.lora = LoraConfig{.rank = 4, .alpha = 8.0};
  std::unique_ptr<GptModel> policy =
      load_lora_policy(config, 9, ParamOptions{DType::F32, Device::cpu()}, saved, "the SFT model");
  policy->eval();
  {  // Trained-looking adapters (B != 0): the policy differs from its base, so the KL term counts.
    NoGradGuard no_grad;
    Generator generator(17);
    for (auto& [name, p] : policy->named_parameters())
      if (name.ends_with("adapter.linear_out.weight")) normal_(p, generator, 0.0, 0.3);
  }

  GrpoTrainerOptions options;
  options.prompts_per_step = 2;
  options.group_size = 4;
  options.micro_batch_size = 2;
  options.num_minibatches = 2;
  options.max_new_tokens = 4;
  options.kl_coef = 0.3;
  options.clip_eps = 0.1;
  options.adamw.lr = 1e-2;
  options.seed = 5;
  GrpoTrainer trainer(options, *policy, std::make_unique<LoraBaseReference>(*policy), length_and_digits, nullptr,
                      testing::addition_prompts(false), testing::byte_tokenizer(), nullptr);
  const std::vector<Tensor> adapters = trainable_parameters(*policy);
  ASSERT_EQ(trainer.optimizer().parameters().size(), adapters.size());
  for (size_t i = 0; i < adapters.size(); ++i) EXPECT_TRUE(trainer.optimizer().parameters()[i].is_same(adapters[i]));

  const GrpoRollout rollout = trainer.collect_rollout();
  ASSERT_EQ(rollout.micro_batches.size(), 4u);
  {  // Move the adapters after sampling: the ratio is no longer 1.
    NoGradGuard no_grad;
    for (auto& [name, p] : policy->named_parameters())
      if (name.ends_with("adapter.linear_in.weight")) p.mul_(1.6);
  }
  std::vector<Tensor> lp, old, ref, mask, adv;
  {
    NoGradGuard no_grad;
    for (size_t j = 0; j < rollout.micro_batches.size(); ++j) {
      const GrpoMicroBatch& m = rollout.micro_batches[j];
      // The reference the trainer used, against the plain model of the base weights.
      const Tensor plain = rollout_log_probs(base, m.batch, options.sampling.temperature);
      const std::vector<float> want = plain.to_vector<float>(), got = m.ref_log_probs.to_vector<float>();
      ASSERT_EQ(want.size(), got.size());
      for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5) << "micro-batch " << j;
      if (j >= 2) continue;  // minibatch 0 = micro-batches 0 and 1
      lp.push_back(rollout_log_probs(*policy, m.batch, options.sampling.temperature));
      old.push_back(m.old_log_probs);
      ref.push_back(plain);
      mask.push_back(m.batch.response_mask);
      adv.push_back(m.advantages);
    }
  }
  const Tensor logp = stack_rows(lp), response_mask = stack_rows(mask);
  const PpoPolicyResult policy_loss =
      ppo_policy_loss(logp, stack_rows(old), stack_rows(adv), response_mask, options.clip_eps);
  const double kl = masked_mean(kl_penalty(logp, stack_rows(ref), KlEstimator::K3), response_mask).item();
  EXPECT_GT(kl, 1e-3) << "policy and base should differ";
  const double expected = policy_loss.loss.item() + options.kl_coef * kl;

  std::vector<std::vector<float>> adapters_before;
  for (const Tensor& a : adapters) adapters_before.push_back(a.to_vector<float>());
  const GrpoStepStats stats = trainer.train_on(rollout);
  ASSERT_EQ(stats.update_losses.size(), 2u);
  EXPECT_NEAR(stats.update_losses[0], expected, 1e-5);

  // Only the adapters moved.
  for (const auto& [name, value] : policy->named_parameters()) {
    if (is_adapter(name)) continue;
    EXPECT_EQ(value.to_vector<float>(), saved.at(name).value.to_vector<float>()) << name;
  }
  for (size_t i = 0; i < adapters.size(); ++i) EXPECT_NE(adapters[i].to_vector<float>(), adapters_before[i]) << i;
}

}  // namespace
}  // namespace tessera
