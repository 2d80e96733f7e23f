// LoRA on GptModel (models/lora.h), tiny GPT and Llama flavours: the LoRA model's base weights
// and starting logits equal the plain model's for the same seed; adapters sit on the chosen
// targets under NeMo's names and only they take gradients (finite differences in f64 over the
// whole model's loss); AdamW on trainable_parameters() lowers the loss while every base
// parameter stays bit for bit; with adapters off the trained model is the plain model again;
// merged equals unmerged; adapters saved alone load into a fresh model; bad options rejected.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "core/ops/random_ops.h"
#include "models/gpt_model.h"
#include "models/lora.h"
#include "optim/adamw.h"
#include "support/gradcheck.h"
#include "support/tiny_models.h"

namespace tessera {
namespace {

TransformerConfig with_lora(TransformerConfig config, std::vector<std::string> targets = {}) {
  config.lora.rank = 2;
  config.lora.alpha = 4.0;
  if (!targets.empty()) config.lora.targets = std::move(targets);
  return config;
}

LmBatch batch(int64_t b, int64_t t, int64_t vocab) {
  std::vector<int64_t> tokens, labels;
  for (int64_t i = 0; i < b * t; ++i) {
    tokens.push_back((i * 7 + 3) % vocab);
    labels.push_back((tokens.back() * 5 + 1) % vocab);  // a function of the token: learnable
  }
  return {Tensor::from_vector(tokens, {b, t}), Tensor::from_vector(labels, {b, t}), Tensor()};
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.to_vector<double>() == b.to_vector<double>();
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  std::vector<double> x = a.to_vector<double>(), y = b.to_vector<double>();
  double diff = 0;
  for (size_t i = 0; i < x.size(); ++i) diff = std::max(diff, std::abs(x[i] - y[i]));
  return diff;
}

bool is_adapter_name(const std::string& name) { return name.find(".adapter.linear_") != std::string::npos; }

TEST(LoraModel, StartsAsThePlainModelWithAdaptersOnTheTargets) {
  for (bool llama : {false, true}) {
    const TransformerConfig plain_config = testing::tiny_transformer(llama);
    GptModel plain(plain_config, 7), lora(with_lora(plain_config), 7);
    StateDict base = plain.named_parameters();
    std::map<std::string, Tensor> adapted;
    for (auto& [name, p] : lora.named_parameters()) adapted.emplace(name, p);
    for (const auto& [name, p] : base) {
      ASSERT_TRUE(adapted.contains(name)) << name;
      EXPECT_TRUE(bitwise_equal(adapted.at(name), p)) << name;
      EXPECT_FALSE(adapted.at(name).requires_grad()) << name << " is frozen";
    }
    EXPECT_EQ(adapted.size(), base.size() + 2 * 4 * size_t(plain_config.num_layers));
    Tensor tokens = batch(2, 5, plain_config.vocab_size).tokens;
    EXPECT_TRUE(bitwise_equal(lora.forward(tokens), plain.forward(tokens))) << "B starts at zero";
    // Names and shapes (Llama: 4 heads in 2 groups of head dim 4, qkv rows (4 + 2 * 2) * 4 = 32;
    // SwiGLU fc1 rows 2 * 24).
    const Shape qkv_b = llama ? Shape{32, 2} : Shape{48, 2};
    EXPECT_EQ(adapted.at("decoder.layers.1.self_attention.linear_qkv.adapter.linear_in.weight").shape(),
              (Shape{2, 16}));
    EXPECT_EQ(adapted.at("decoder.layers.1.self_attention.linear_qkv.adapter.linear_out.weight").shape(), qkv_b);
    EXPECT_EQ(adapted.at("decoder.layers.0.self_attention.linear_proj.adapter.linear_in.weight").shape(),
              (Shape{2, 16}));
    EXPECT_EQ(adapted.at("decoder.layers.0.mlp.linear_fc1.adapter.linear_out.weight").shape(),
              (Shape{llama ? 48 : 24, 2}));
    EXPECT_EQ(adapted.at("decoder.layers.0.mlp.linear_fc2.adapter.linear_in.weight").shape(), (Shape{2, 24}));
    StateDict saved = lora_state_dict(lora);
    EXPECT_EQ(saved.size(), 2 * 4 * size_t(plain_config.num_layers));
    for (const auto& [name, p] : saved) EXPECT_TRUE(is_adapter_name(name)) << name;
    EXPECT_EQ(trainable_parameters(lora).size(), saved.size());
    // rank x (in + out) per target: qkv 16 -> qkv_rows, proj 16 -> 16, fc1 16 -> fc1_rows, fc2 24 -> 16.
    const int64_t qkv_rows = qkv_b[0], fc1_rows = llama ? 48 : 24;
    const int64_t per_layer = 2 * ((16 + qkv_rows) + (16 + 16) + (16 + fc1_rows) + (24 + 16));
    int64_t trainable = 0;
    for (const Tensor& p : trainable_parameters(lora)) trainable += p.numel();
    EXPECT_EQ(trainable, plain_config.num_layers * per_layer);
  }
}

TEST(LoraModel, OnlyTheChosenTargetsGetAdapters) {
  GptModel model(with_lora(testing::tiny_transformer(true), {"linear_qkv", "linear_fc2"}), 7);
  std::set<std::string> targets;
  for (const auto& [name, p] : lora_state_dict(model)) {
    const size_t end = name.find(".adapter.");
    targets.insert(name.substr(name.rfind('.', end - 1) + 1, end - name.rfind('.', end - 1) - 1));
  }
  EXPECT_EQ(targets, (std::set<std::string>{"linear_qkv", "linear_fc2"}));
}

TEST(LoraModel, AdapterGradientsPassFiniteDifferencesAndTheBaseGetsNone) {
  for (bool llama : {false, true}) {
    GptModel model(with_lora(testing::tiny_transformer(llama)), 3, ParamOptions{.dtype = DType::F64});
    {
      // Non-zero B, so that A's gradient is not zero.
      NoGradGuard no_grad;
      Generator generator(5);
      for (LoraAdapter* adapter : lora_adapters(model)) {
        Tensor b = adapter->b();
        uniform_(b, generator, -0.5, 0.5);
      }
    }
    LmBatch data = batch(2, 4, model.config().vocab_size);
    std::vector<Tensor> adapters = trainable_parameters(model);
    testing::GradcheckResult result =
        testing::gradcheck([&](const std::vector<Tensor>&) { return model.loss(data); }, adapters);
    EXPECT_LT(result.max_relative_error, 1e-6) << (llama ? "llama" : "gpt");
    EXPECT_GT(result.max_abs_gradient, 0.0);
    for (const auto& [name, p] : model.named_parameters()) EXPECT_EQ(p.grad().defined(), is_adapter_name(name)) << name;
  }
}

TEST(LoraModel, TrainingMovesOnlyTheAdaptersAndTheReferenceIsTheBase) {
  for (bool llama : {false, true}) {
    const TransformerConfig config = with_lora(testing::tiny_transformer(llama));
    GptModel model(config, 9), plain(testing::tiny_transformer(llama), 9);
    std::vector<Tensor> before;
    for (const Tensor& p : model.parameters()) before.push_back(p.clone());
    AdamW optimizer(trainable_parameters(model), {.lr = 3e-2});
    LmBatch data = batch(2, 8, config.vocab_size);
    double first = 0, last = 0;
    for (int step = 0; step < 12; ++step) {
      model.zero_grad();
      Tensor loss = model.loss(data);
      loss.backward();
      optimizer.step();
      (step == 0 ? first : last) = loss.item();
    }
    EXPECT_LT(last, first - 0.1) << (llama ? "llama" : "gpt");
    const std::vector<Tensor> after = model.parameters();
    size_t changed = 0;
    for (size_t i = 0; i < after.size(); ++i) {
      if (after[i].requires_grad()) {
        changed += bitwise_equal(after[i], before[i]) ? 0 : 1;
      } else {
        EXPECT_TRUE(bitwise_equal(after[i], before[i])) << "base parameter " << i << " moved";
      }
    }
    EXPECT_EQ(changed, trainable_parameters(model).size()) << "every adapter factor trained";
    // Optimizer state exists for the adapters only.
    int64_t state = 0, adapter_elements = 0;
    for (size_t i = 0; i < trainable_parameters(model).size(); ++i)
      state += optimizer.exp_avg(i).numel() + optimizer.exp_avg_sq(i).numel();
    for (const auto& [name, p] : lora_state_dict(model)) adapter_elements += p.numel();
    EXPECT_EQ(state, 2 * adapter_elements);
    NoGradGuard no_grad;
    Tensor tokens = data.tokens;
    Tensor adapted = model.forward(tokens);
    EXPECT_GT(max_abs_diff(adapted, plain.forward(tokens)), 1e-3);
    {
      LoraDisabledScope reference(model);
      EXPECT_TRUE(bitwise_equal(model.forward(tokens), plain.forward(tokens)));
    }
    EXPECT_TRUE(bitwise_equal(model.forward(tokens), adapted));
  }
}

TEST(LoraModel, MergedEqualsUnmergedAndSavedAdaptersReload) {
  const TransformerConfig config = with_lora(testing::tiny_transformer(true));
  GptModel model(config, 4);
  {
    NoGradGuard no_grad;
    Generator generator(8);
    for (LoraAdapter* adapter : lora_adapters(model)) {
      Tensor b = adapter->b();
      uniform_(b, generator, -0.5, 0.5);
    }
  }
  NoGradGuard no_grad;
  Tensor tokens = batch(2, 6, config.vocab_size).tokens;
  Tensor unmerged = model.forward(tokens);
  Tensor qkv;
  for (const auto& [name, p] : model.named_parameters())
    if (name == "decoder.layers.0.self_attention.linear_qkv.weight") qkv = p;
  const Tensor qkv_before = qkv.clone();
  merge_lora(model);
  EXPECT_GT(max_abs_diff(qkv, qkv_before), 1e-3) << "the merge writes into the base weight";
  Tensor merged = model.forward(tokens);
  const double tolerance = 1e-5 * std::max(1.0, max_abs_diff(unmerged, Tensor::zeros(unmerged.shape())));
  EXPECT_LT(max_abs_diff(merged, unmerged), tolerance);
  unmerge_lora(model);
  EXPECT_LT(max_abs_diff(model.forward(tokens), unmerged), tolerance);

  // Adapters alone into a fresh model of the same seed: the same logits, bit for bit.
  GptModel fresh(config, 4);
  EXPECT_GT(max_abs_diff(fresh.forward(tokens), unmerged), 1e-3);
  load_lora_state_dict(fresh, lora_state_dict(model));
  EXPECT_TRUE(bitwise_equal(fresh.forward(tokens), unmerged));
  StateDict wrong = lora_state_dict(model);
  wrong.pop_back();
  EXPECT_THROW(load_lora_state_dict(fresh, wrong), Error);
}

TEST(LoraModel, BadOptionsAreRejected) {
  auto expect_error = [](TransformerConfig config, const std::string& reason) {
    try {
      GptModel model(config, 1);
      ADD_FAILURE() << "expected an error containing '" << reason << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(reason), std::string::npos) << e.what();
    }
  };
  TransformerConfig config = with_lora(testing::tiny_transformer(false));
  config.lora.targets = {"linear_qkv", "q_proj"};
  expect_error(config, "unknown target 'q_proj'");
  config.lora.targets = {"linear_fc1", "linear_fc1"};
  expect_error(config, "names 'linear_fc1' twice");
  config = with_lora(testing::tiny_transformer(false));
  config.lora.rank = -1;
  expect_error(config, "lora.rank must be >= 0");
  config.lora.rank = 2;
  config.lora.dropout = 1.0;
  expect_error(config, "lora.dropout 1 must be in [0, 1)");
}

TEST(LoraModel, RecomputationGivesTheSameAdapterGradientsBitForBit) {
  const TransformerConfig config = with_lora(testing::tiny_transformer(true));
  GptModel plain(config, 6), recomputed(config, 6);
  recomputed.set_recompute(true);
  for (GptModel* model : {&plain, &recomputed}) {
    NoGradGuard no_grad;
    Generator generator(2);
    for (LoraAdapter* adapter : lora_adapters(*model)) {
      Tensor b = adapter->b();
      uniform_(b, generator, -0.5, 0.5);
    }
  }
  LmBatch data = batch(2, 6, config.vocab_size);
  plain.loss(data).backward();
  recomputed.loss(data).backward();
  const StateDict a = lora_state_dict(plain), b = lora_state_dict(recomputed);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(bitwise_equal(a[i].second.grad(), b[i].second.grad())) << a[i].first;
}


}  // namespace
}  // namespace tessera
