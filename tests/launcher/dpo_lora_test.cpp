// `tessera dpo` with a lora section (launcher/dpo_trainer.h): the policy is dpo.init_from's model
// frozen plus adapters, the reference the same model with the adapters off. Checked against
// independent computations:
//  - step 1: the adapters' B start at 0, so policy == reference and the DPO loss is log 2, every
//    reward and margin 0;
//  - after training, the held-out evaluation (whose reference log-probs are first computed then,
//    with trained adapters in the model) equals posttrain's dpo_loss on log-probs computed here:
//    the trained policy's, and a plain model loaded from dpo.init_from as the reference;
//  - the base weights are bitwise those of dpo.init_from, the adapters moved;
//  - the memory lines: no gradient or optimizer state for the base, and a reference of 0 B
//    against a copy's bytes counted here from a plain model;
//  - the checkpoint holds the adapters alone, and `tessera export`'s source (the adapters merged
//    into the saved recipe's lora.base) gives the trained policy's logits;
//  - bad LoRA recipes are one line.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "launcher/checkpoint_argument.h"
#include "launcher/checkpoint_state.h"
#include "launcher/dpo_test_util.h"
#include "launcher/dpo_trainer.h"
#include "launcher/export_source.h"
#include "models/lora.h"
#include "posttrain/losses.h"

namespace tessera {
namespace {

using testing::answer_log_prob;
using testing::ArithmeticPair;
using ::testing::HasSubstr;
using testing::TemporaryFolder;

PreferenceRunConfig dpo_config(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  return preference_config_from_recipe(PreferenceMethod::kDpo, yaml, "dpo.yaml", overrides);
}

bool is_adapter(const std::string& name) { return name.find(".adapter.") != std::string::npos; }

class DpoLora : public ::testing::Test {
 protected:
  void SetUp() override {
    pairs_ = testing::arithmetic_pairs(10, 3);  // 80 to train on, 20 held out
    testing::write_pairs(folder_.file("train.jsonl"), {pairs_.begin(), pairs_.begin() + 80});
    testing::write_pairs(folder_.file("valid.jsonl"), {pairs_.begin() + 80, pairs_.end()});
    const std::string plain = recipe("  init_from: " + folder_.file("train.jsonl") + "\n");
    testing::save_seeded_model(dpo_config(plain).train, 11, folder_.file("base"));
  }
  std::string recipe(const std::string& dpo, const std::string& extra = "") const {
    return testing::preference_recipe("dpo", folder_.file("train.jsonl"), folder_.file("valid.jsonl"),
                                      folder_.file("run"), dpo + extra);
  }
  std::string lora_recipe() const {
    return recipe("  init_from: " + folder_.file("base") + "\n  beta: 0.5\n",
                  "lora:\n  rank: 4\n  alpha: 8\n  target_modules: [linear_qkv, linear_fc2]\n");
  }

  TemporaryFolder folder_;
  std::vector<ArithmeticPair> pairs_;
};

TEST_F(DpoLora, ReferenceIsTheBaseWithAdaptersOffAndTheBaseStaysFrozen) {
  const PreferenceRunConfig config =
      dpo_config(lora_recipe(), {"checkpoint.save=" + folder_.file("dpo"), "optimizer.lr=1.0e-2"});
  std::vector<std::string> lines;
  DpoTrainer trainer(config, [&](const std::string& line) { lines.push_back(line); });
  const PreferenceResult result = trainer.run();
  ASSERT_EQ(result.steps.size(), 4u);

  // Step 1: B = 0, the policy is the reference.
  const PreferenceMetrics& first = result.steps[0];
  EXPECT_NEAR(first.loss, std::log(2.0), 1e-6);
  EXPECT_NEAR(first.margin, 0.0, 1e-6);
  EXPECT_NEAR(first.chosen_reward, 0.0, 1e-6);

  // The reference, independently: a plain model of dpo.init_from's weights.
  TransformerConfig plain = config.train.model;
  plain.lora = {};
  GptModel base(plain, 0);
  const LoadedCheckpoint start = load_checkpoint_argument(folder_.file("base"), "test");
  load_model_weights(start.checkpoint, start.path, base);
  const Tokenizer& tokenizer = testing::gpt2_tokenizer();
  const ChatTemplate chat = ChatTemplate::for_family("gpt2", tokenizer);
  std::vector<float> pc, pr, rc, rr;
  for (size_t i = 80; i < pairs_.size(); ++i) {
    pc.push_back(float(answer_log_prob(trainer.policy(), chat, pairs_[i].prompt, pairs_[i].chosen)));
    pr.push_back(float(answer_log_prob(trainer.policy(), chat, pairs_[i].prompt, pairs_[i].rejected)));
    rc.push_back(float(answer_log_prob(base, chat, pairs_[i].prompt, pairs_[i].chosen)));
    rr.push_back(float(answer_log_prob(base, chat, pairs_[i].prompt, pairs_[i].rejected)));
  }
  auto vec = [](const std::vector<float>& v) { return Tensor::from_vector(v, {int64_t(v.size())}); };
  const DpoResult expected = dpo_loss(vec(pc), vec(pr), vec(rc), vec(rr), DpoOptions{0.5, 0.0, false});
  ASSERT_EQ(result.evaluations.size(), 1u);
  const PreferenceMetrics& held_out = result.evaluations[0];
  std::printf("dpo lora: train loss %.4f -> %.4f; held-out loss %.4f, accuracy %.3f, margin %+.4f\n",
              result.steps.front().loss, result.steps.back().loss, held_out.loss, held_out.accuracy, held_out.margin);
  EXPECT_GT(std::abs(expected.loss.item() - std::log(2.0)), 1e-4) << "the adapters did not move the policy";
  EXPECT_NEAR(held_out.loss, expected.loss.item(), 1e-5);
  EXPECT_NEAR(held_out.margin, mean(expected.margins).item(), 1e-4);
  EXPECT_NEAR(held_out.chosen_reward, mean(expected.chosen_rewards).item(), 1e-4);
  EXPECT_NEAR(held_out.accuracy, expected.accuracy.item(), 1e-6);  // an f32 mean of 20

  // The base bitwise as loaded; the adapters trained.
  int64_t adapters = 0, adapter_elements = 0;
  for (const auto& [name, value] : trainer.policy().named_parameters()) {
    if (is_adapter(name)) {
      ++adapters;
      adapter_elements += value.numel();
      if (name.ends_with("linear_out.weight")) {
        EXPECT_GT(sum(abs(value.detach())).item(), 0.0) << name;
      }
      continue;
    }
    EXPECT_EQ(value.to_vector<float>(), start.checkpoint.model.at(name).value.to_vector<float>()) << name;
  }
  EXPECT_EQ(adapters, 2 * 2 * 2);  // 2 layers x 2 targets x (A, B)

  // Memory: the adapters alone are trained; the reference holds nothing, a copy would hold the
  // plain model's weights.
  int64_t base_elements = 0;
  for (const Tensor& p : base.parameters()) base_elements += p.numel();
  std::string log;
  for (const std::string& line : lines) log += line + "\n";
  for (const std::string& line : lines)
    if (line.starts_with("LoRA") || line.starts_with("dpo:")) std::printf("  %s\n", line.c_str());
  EXPECT_THAT(log, HasSubstr(fmt::format("LoRA: trainable {} parameters", adapter_elements)));
  EXPECT_THAT(log, HasSubstr(fmt::format("frozen base {} parameters", base_elements)));
  EXPECT_THAT(log, HasSubstr("gradients 0 B, optimizer state 0 B"));
  EXPECT_THAT(log, HasSubstr(fmt::format("reference: the base with adapters off, 0 B extra (a frozen copy of the model "
                                         "would hold {:.2f} MiB)",
                                         double(base_elements * 4) / double(1 << 20))));

  // The checkpoint: adapters only; export merges them into dpo.init_from's weights.
  const LoadedCheckpoint saved = load_checkpoint_argument(folder_.file("dpo"), "test");
  EXPECT_EQ(saved.checkpoint.model.size(), size_t(adapters));
  for (const auto& entry : saved.checkpoint.model) EXPECT_TRUE(is_adapter(entry.first)) << entry.first;
  const ExportSource source = load_export_source(folder_.file("dpo"));
  EXPECT_FALSE(source.config.lora.enabled());
  GptModel merged(source.config, 0);
  {
    NoGradGuard no_grad;
    for (auto& [name, value] : merged.named_parameters()) value.copy_(source.parameters.at(name));
  }
  const std::vector<int64_t> ids{10, 20, 30, 40, 5, 6, 7, 8};
  NoGradGuard no_grad;
  const Tensor tokens = Tensor::from_vector(ids, {1, int64_t(ids.size())});
  const std::vector<float> a = merged.forward(tokens).to_vector<float>();
  const std::vector<float> b = trainer.policy().forward(tokens).to_vector<float>();
  ASSERT_EQ(a.size(), b.size());
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::abs(a[i] - b[i])));
  EXPECT_LT(worst, 1e-4) << "merged export vs the trained policy";
}

TEST_F(DpoLora, BadLoraRecipesAreOneLine) {
  auto error_of = [&](const std::string& yaml, const std::vector<std::string>& overrides) {
    try {
      dpo_config(yaml, overrides);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(error_of(lora_recipe(), {}), "(no error)");
  const std::string bad_target = error_of(lora_recipe(), {"lora.target_modules=[linear_qkv,attention_out]"});
  EXPECT_THAT(bad_target, HasSubstr("lora.target_modules: unknown target 'attention_out'"));
  EXPECT_EQ(bad_target.find('\n'), std::string::npos);
  EXPECT_THAT(error_of(lora_recipe(), {"dpo.reference_from=" + folder_.file("train.jsonl")}),
              HasSubstr("drop dpo.reference_from"));
  EXPECT_THAT(error_of(lora_recipe(), {"lora.base=" + folder_.file("train.jsonl")}), HasSubstr("drop lora.base"));
  // Resolved, the recipe names the base the adapters belong on (what export reads).
  EXPECT_EQ(Recipe::parse(dpo_config(lora_recipe()).train.resolved_yaml, "resolved").get_string("lora.base"),
            folder_.file("base"));
  const std::string reward_model = testing::preference_recipe("reward_model", folder_.file("train.jsonl"), "",
                                                              folder_.file("run"), "lora:\n  rank: 4\n");
  try {
    preference_config_from_recipe(PreferenceMethod::kRewardModel, reward_model, "rm.yaml", {});
    ADD_FAILURE() << "reward-model with LoRA was accepted";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("reward-model` with LoRA is not supported"));
  }
}

}  // namespace
}  // namespace tessera
