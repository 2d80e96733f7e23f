// `tessera train` with a lora section: a plain SFT run saves the base, a LoRA run starts from it
// (lora.base) and trains the adapters only. Each claim is checked against an independent
// computation:
// - the LoRA run's first loss is the base checkpoint's plain model's loss on the same rows (the
//   base is loaded, B starts at zero);
// - the adapters the LoRA checkpoint holds, put on the *original* base weights in a model built
//   here, reproduce the trainer's final validation loss (so training left the base as loaded);
// - the trainable count equals the closed form rank x sum(in + out) over the targets, and the
//   memory line shows 0 B of gradients and optimizer state for the frozen base;
// - `tessera export`'s source (base + adapters merged) gives the unmerged model's logits;
// - a run stopped and resumed from its adapter checkpoint computes the same losses, bit for bit,
//   as one that never stopped;
// - bad lora keys are one-line errors naming the key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <regex>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "data/data_test_util.h"
#include "data/tokenizer_test_util.h"
#include "launcher/checkpoint_sharding.h"
#include "launcher/export_command.h"
#include "launcher/export_source.h"
#include "launcher/hf_format.h"
#include "launcher/lora_checkpoint.h"
#include "launcher/lora_run.h"
#include "launcher/peft_export.h"
#include "launcher/recipe.h"
#include "launcher/safetensors.h"
#include "launcher/sft_data.h"
#include "launcher/trainer.h"
#include "models/lora.h"

namespace tessera {
namespace {

using testing::TemporaryFolder;

// Addition problems as chat turns; the assistant's answer is `answer_prefix` then the sum.
void write_addition_chats(const std::string& path, int count, uint32_t seed, const std::string& answer_prefix) {
  std::ofstream out(path);
  std::mt19937 engine(seed);
  for (int i = 0; i < count; ++i) {
    const int a = int(engine() % 50), b = int(engine() % 50);
    out << "{\"messages\": [{\"role\": \"user\", \"content\": \"" << a << "+" << b
        << "=\"}, {\"role\": \"assistant\", \"content\": \"" << answer_prefix << a + b << "\"}]}\n";
  }
}

LmBatch to_batch(const MicroBatch& mb) {
  Shape shape{mb.rows, mb.sequence_length};
  LmBatch batch{Tensor::from_vector(mb.tokens, shape), Tensor::from_vector(mb.labels, shape),
                Tensor::from_vector(mb.loss_mask, shape)};
  batch.document_lengths = mb.document_lengths;
  return batch;
}

// The masked mean loss of `model` over the first `micro_batches` micro-batches of `dataset`.
double masked_loss(const GptModel& model, std::shared_ptr<const SftDataset> dataset, int64_t micro_batches) {
  DataLoader loader(std::move(dataset), DataLoaderOptions{.micro_batch_size = 2});
  double loss_sum = 0.0, counted = 0.0;
  for (int64_t i = 0; i < micro_batches; ++i) {
    const MicroBatch mb = *loader.next();
    loss_sum += model.loss(to_batch(mb), LossReduction::Sum).item();
    counted += counted_tokens(mb);
  }
  return loss_sum / counted;
}

class LoraTrain : public ::testing::Test {
 protected:
  void SetUp() override {
    // The base learns the plain answers; the adapters learn a new answer format on top of it.
    write_addition_chats(folder_.file("base_train.jsonl"), 400, 1, "");
    write_addition_chats(folder_.file("base_valid.jsonl"), 40, 2, "");
    write_addition_chats(folder_.file("train.jsonl"), 400, 3, "=");
    write_addition_chats(folder_.file("valid.jsonl"), 40, 4, "=");
  }

  // Layers of 64 wide, 4 heads, MLP 128 (GELU); fp32 on the CPU.
  // `data`: the chat files' prefix (base_ for the base run's).
  std::string recipe(const std::string& run, const std::string& extra = "", const std::string& data = "") const {
    const auto fixture = testing::gpt2_fixture_dir();
    return "model:\n  preset: gpt2-124m\n  num_layers: 2\n  hidden_size: 64\n  num_attention_heads: 4\n"
           "  ffn_hidden_size: 128\n  max_position_embeddings: 64\n"
           "data:\n  sft_train_path: [" +
           folder_.file(data + "train.jsonl") + "]\n  sft_valid_path: [" + folder_.file(data + "valid.jsonl") +
           "]\n  vocab_file: " + (fixture / "encoder.json").string() +
           "\n  merge_file: " + (fixture / "vocab.bpe").string() + "\n  seq_length: 64\n" +
           "optimizer:\n  lr: 3.0e-3\n  min_lr: 3.0e-4\n  weight_decay: 0.0\n  clip_grad: 1.0\n"
           "train:\n  micro_batch_size: 2\n  global_batch_size: 4\n  train_iters: 30\n  eval_interval: 30\n"
           "  eval_iters: 2\n  precision: fp32\n  device: cpu\n" +
           "checkpoint:\n  save: " + folder_.file(run + "_ckpt") + "\n  async_save: false\n" +
           "logging:\n  log_interval: 10\n  run_dir: " + folder_.file(run) + "\n" + extra;
  }

  std::string lora_recipe(const std::string& run, const std::string& base) const {
    return recipe(run, "lora:\n  rank: 8\n  alpha: 16\n  base: " + base + "\n");
  }

  static TrainResult train(const std::string& yaml, const std::vector<std::string>& overrides,
                           std::vector<std::string>* lines = nullptr, std::optional<int64_t> stop_after = {}) {
    Trainer trainer(train_config_from_recipe(Recipe::parse(yaml, "lora.yaml", overrides)),
                    [&](const std::string& line) {
                      if (lines) lines->push_back(line);
                    });
    return trainer.run(stop_after);
  }

  // A plain SFT run of 30 steps on the plain answers: the base the LoRA runs start from.
  std::string train_base() {
    const TrainResult base = train(recipe("base", "", "base_"), {"train.train_iters=30", "optimizer.lr=1.0e-2"});
    return base.saved_checkpoints.back();
  }

  TemporaryFolder folder_;
};

TEST_F(LoraTrain, AdaptersLearnOnTheLoadedFrozenBase) {
  const std::string base = train_base();
  const TrainConfig config = train_config_from_recipe(Recipe::parse(lora_recipe("lora", base), "lora.yaml", {}));
  const SftDatasets data = load_sft_datasets(config, [](const std::string&) {});
  TransformerConfig plain_config = config.model;
  plain_config.lora = {};
  GptModel plain(plain_config, config.seed, ParamOptions{DType::F32, Device::cpu()});
  load_lora_base(base, plain);  // a plain model takes the same loader: every parameter is "base"
  const double base_loss = masked_loss(plain, data.train, 2);
  const double base_validation = masked_loss(plain, data.valid, 4);  // eval_iters x micro-batches per step

  std::vector<std::string> lines;
  const TrainResult result = train(lora_recipe("lora", base), {"optimizer.lr=1.0e-2"}, &lines);
  ASSERT_EQ(result.steps.size(), 30u);
  EXPECT_NEAR(result.steps[0].loss, base_loss, 1e-6 * base_loss) << "the first step sees the base model";
  double first = 0.0, last = 0.0;
  for (int i = 0; i < 5; ++i) first += result.steps[size_t(i)].loss, last += result.steps[size_t(25 + i)].loss;
  std::printf("lora: first 5 steps mean loss %.3f, last 5 %.3f\n", first / 5, last / 5);
  EXPECT_LT(last, 0.85 * first);

  // rank x [(C + 3C) + (C + C) + (C + F) + (F + C)] per layer, C = 64, F = 128, 2 layers.
  const int64_t trainable = 8 * ((64 + 192) + (64 + 64) + (64 + 128) + (128 + 64)) * 2;
  std::string memory;
  for (const std::string& line : lines)
    if (line.starts_with("LoRA: trainable")) memory = line;
  EXPECT_NE(memory.find("trainable " + std::to_string(trainable) + " parameters"), std::string::npos) << memory;
  EXPECT_NE(memory.find("gradients 0 B, optimizer state 0 B"), std::string::npos) << memory;
  int64_t frozen = 0;
  for (const Tensor& p : plain.parameters()) frozen += p.numel();
  EXPECT_NE(memory.find("frozen base " + std::to_string(frozen) + " parameters"), std::string::npos)
      << "the frozen count is the plain model's: " << memory;

  // The checkpoint: adapters and their state only.
  ASSERT_FALSE(result.saved_checkpoints.empty());
  CheckpointReader reader(result.saved_checkpoints.back());
  for (const auto& [name, tensor] : reader.metadata().tensors)
    EXPECT_NE(name.find(".adapter."), std::string::npos) << name << " should not be in an adapter checkpoint";

  // The original base + the saved adapters, built here, give the trainer's final validation loss.
  GptModel lora(config.model, config.seed, ParamOptions{DType::F32, Device::cpu()});
  load_lora_base(base, lora);
  AdamW optimizer(trainable_parameters(lora), config.adamw);
  restore_lora_checkpoint(reader, lora, optimizer);
  lora.eval();
  ASSERT_EQ(result.validation_losses.size(), 1u);
  const double validation = masked_loss(lora, data.valid, 4);
  EXPECT_NEAR(result.validation_losses[0].second, validation, 1e-5 * validation);
  std::printf("lora: validation loss %.3f, the base model's %.3f\n", validation, base_validation);
  EXPECT_LT(validation, 0.85 * base_validation) << "the adapters learned the new answer format";

  // Export's source merges the adapters into the base: the plain model's logits are the LoRA one's.
  const ExportSource source = load_export_source(result.saved_checkpoints.back());
  EXPECT_FALSE(source.config.lora.enabled());
  GptModel merged(source.config, config.seed, ParamOptions{DType::F32, Device::cpu()});
  StateDict state;
  for (const auto& [name, value] : merged.named_parameters()) {
    ASSERT_TRUE(source.parameters.contains(name)) << name;
    state.emplace_back(name, source.parameters.at(name));
  }
  merged.load_state_dict(state);
  merged.eval();
  DataLoader loader(data.valid, DataLoaderOptions{.micro_batch_size = 2});
  const LmBatch batch = to_batch(*loader.next());
  const std::vector<float> a = lora.forward(batch.tokens).to_vector<float>();
  const std::vector<float> b = merged.forward(batch.tokens).to_vector<float>();
  ASSERT_EQ(a.size(), b.size());
  float worst = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  EXPECT_LE(worst, 1e-5f) << "merged vs unmerged logits";
  // `tessera export --format peft` writes the trained adapters in PEFT's layout: each module's
  // lora_A and lora_B, the trained B no longer zero.
  ExportCommandOptions peft_options;
  peft_options.checkpoint = result.saved_checkpoints.back();
  peft_options.format = "peft";
  peft_options.output = (folder_.path() / "peft").string();
  peft_options.dtype = "f32";
  peft_options.quiet = true;
  ASSERT_EQ(run_export_command(peft_options), 0);
  const SafetensorsContents peft = read_safetensors((folder_.path() / "peft" / "adapter_model.safetensors").string());
  EXPECT_EQ(peft.tensors.size(), size_t(2 * config.model.num_layers * 4));
  for (const auto& [name, tensor] : peft.tensors) {
    if (!name.ends_with("lora_B.weight")) continue;
    const std::vector<float> values = tensor.to_vector<float>();
    EXPECT_TRUE(std::any_of(values.begin(), values.end(), [](float v) { return v != 0.0f; })) << name;
  }
  std::ifstream adapter_config(folder_.path() / "peft" / "adapter_config.json");
  EXPECT_NE(std::string(std::istreambuf_iterator<char>(adapter_config), {}).find("\"r\": 8"), std::string::npos);
  // The merge changed the base (the adapters learned something).
  CheckpointReader base_reader(base);
  const std::string qkv = "decoder.layers.0.self_attention.linear_qkv.weight";
  EXPECT_NE(base_reader.read_full("model/" + qkv).to_vector<float>(), source.parameters.at(qkv).to_vector<float>());
}

// The PEFT adapter of a model with trained-looking adapters (B random, not zero): for every PEFT
// module, (alpha / r) lora_B lora_A is the change that merging made to that module's weight in
// the transformers export (hf_format.h), transposed for GPT-2's Conv1D; the merged model's logits
// are the adapted model's. GPT-2 (fused c_attn) and Llama with GQA and SwiGLU (q/k/v and
// gate/up split out of the fused adapters).
TEST(LoraExport, PeftAdapterIsTheMergedDeltaInTransformersLayout) {
  TransformerConfig small_gpt2 = transformer_preset("gpt2-124m");
  small_gpt2.num_layers = 2;
  small_gpt2.hidden_size = 64;
  small_gpt2.num_attention_heads = small_gpt2.num_query_groups = 4;
  small_gpt2.ffn_hidden_size = 128;
  small_gpt2.vocab_size = 512;
  small_gpt2.max_position_embeddings = 64;
  for (TransformerConfig config : {small_gpt2, transformer_preset("llama-tiny")}) {
    const bool gpt2 = config.activation == Activation::Gelu;
    SCOPED_TRACE(gpt2 ? "gpt2" : "llama-tiny");
    config.lora = LoraConfig{.rank = 4, .alpha = 8.0};
    GptModel lora(config, 5, ParamOptions{DType::F32, Device::cpu()});
    std::mt19937 engine(3);
    std::normal_distribution<float> normal(0.0f, 0.05f);
    std::map<std::string, Tensor> ours, base, adapters;
    for (auto& [name, parameter] : lora.named_parameters()) {
      if (name.ends_with(".adapter.linear_out.weight")) {
        std::vector<float> values(size_t(parameter.numel()));
        for (float& v : values) v = normal(engine);
        NoGradGuard no_grad;
        parameter.copy_(Tensor::from_vector(values, parameter.shape()));
      }
      ours[name] = parameter.detach().clone();
      (name.find(".adapter.") != std::string::npos ? adapters : base)[name] = ours[name];
    }
    std::map<std::string, Tensor> merged = ours;
    merge_lora_tensors(merged, config.lora);
    TransformerConfig plain = config;
    plain.lora = {};
    std::map<std::string, Tensor> hf_base, hf_merged;
    for (auto& [name, t] : to_hf_tensors(plain, base)) hf_base[name] = t;
    for (auto& [name, t] : to_hf_tensors(plain, merged)) hf_merged[name] = t;

    const NamedTensors peft = to_peft_tensors(config, adapters);
    EXPECT_EQ(peft.size(), size_t(2 * config.num_layers * (gpt2 ? 4 : 7)));
    for (size_t i = 0; i < peft.size(); i += 2) {
      const std::string module = peft[i].first.substr(0, peft[i].first.size() - std::string(".lora_A.weight").size());
      ASSERT_EQ(peft[i + 1].first, module + ".lora_B.weight");
      const std::string weight = module.substr(std::string("base_model.model.").size()) + ".weight";
      Tensor delta = scale(matmul(peft[i + 1].second, peft[i].second), config.lora.alpha / double(config.lora.rank));
      if (gpt2) delta = delta.transpose(0, 1).contiguous();
      const std::vector<float> expected = sub(hf_merged.at(weight), hf_base.at(weight)).to_vector<float>();
      const std::vector<float> got = delta.to_vector<float>();
      ASSERT_EQ(expected.size(), got.size()) << weight;
      float worst = 0.0f;
      for (size_t j = 0; j < got.size(); ++j) worst = std::max(worst, std::abs(expected[j] - got[j]));
      EXPECT_LE(worst, 1e-6f) << weight;
    }
    const nlohmann::ordered_json adapter_config = peft_adapter_config(config);
    EXPECT_EQ(adapter_config["r"], 4);
    EXPECT_EQ(adapter_config["lora_alpha"], 8.0);
    EXPECT_EQ(adapter_config["fan_in_fan_out"], gpt2);
    EXPECT_EQ(adapter_config["target_modules"].size(), gpt2 ? 4u : 7u);

    GptModel merged_model(plain, 5, ParamOptions{DType::F32, Device::cpu()});
    StateDict state;
    for (const auto& [name, value] : merged_model.named_parameters()) state.emplace_back(name, merged.at(name));
    merged_model.load_state_dict(state);
    const Tensor tokens = Tensor::from_vector(std::vector<int64_t>{1, 7, 42, 9, 300, 11, 5, 2}, {1, 8});
    const std::vector<float> a = lora.forward(tokens).to_vector<float>(),
                             b = merged_model.forward(tokens).to_vector<float>();
    float worst = 0.0f;
    for (size_t j = 0; j < a.size(); ++j) worst = std::max(worst, std::abs(a[j] - b[j]));
    EXPECT_LE(worst, 1e-5f) << "merged vs unmerged logits";
  }
}

TEST_F(LoraTrain, ResumingFromAnAdapterCheckpointIsExact) {
  const std::string base = train_base();
  const std::vector<std::string> shorter = {"train.train_iters=8", "checkpoint.save_interval=4",
                                            "model.hidden_dropout=0.1", "lora.dropout=0.1"};
  const TrainResult whole = train(lora_recipe("whole", base), shorter);
  train(lora_recipe("stopped", base), shorter, nullptr, 4);
  const TrainResult resumed = train(lora_recipe("stopped", base), shorter);
  ASSERT_EQ(resumed.steps.size(), 4u);
  EXPECT_NE(resumed.resumed_from.find("iter_0000004"), std::string::npos);
  for (size_t i = 0; i < 4; ++i)
    EXPECT_EQ(resumed.steps[i].loss, whole.steps[4 + i].loss) << "step " << resumed.steps[i].step;
}

TEST_F(LoraTrain, BadLoraKeysAreOneLineNamingTheKey) {
  auto error_of = [&](const std::vector<std::string>& overrides) {
    try {
      train_config_from_recipe(Recipe::parse(recipe("bad"), "lora.yaml", overrides));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  const std::string unknown = error_of({"lora.rank=8", "lora.target_modules=[linear_qkv, q_proj]"});
  EXPECT_NE(unknown.find("lora.target_modules: unknown target 'q_proj'"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("linear_fc2"), std::string::npos) << "the known targets are listed: " << unknown;
  const std::string off = error_of({"lora.target_modules=[linear_qkv]"});
  EXPECT_NE(off.find("lora.target_modules is set but lora.rank is 0"), std::string::npos) << off;
  const std::string negative = error_of({"lora.rank=-1"});
  EXPECT_NE(negative.find("lora.rank"), std::string::npos) << negative;
  const std::string missing = error_of({"lora.rank=8", "lora.base=" + folder_.file("nowhere")});
  EXPECT_NE(missing.find("lora.base = " + folder_.file("nowhere") + " does not exist"), std::string::npos) << missing;
  EXPECT_EQ(error_of({"lora.rank=8", "lora.target_modules=[linear_fc1]"}), "(no error)");

  // Layouts LoRA does not run with yet, refused before any work (as a launch of 2 ranks would be).
  auto launch_error = [&](const std::vector<std::string>& overrides) {
    try {
      train_config_from_recipe(Recipe::parse(recipe("bad"), "lora.yaml", overrides), LaunchContext{0, 2, 0, 1});
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  const std::string fsdp = launch_error({"lora.rank=8", "parallel.zero_stage=3", "checkpoint.save="});
  EXPECT_NE(fsdp.find("lora.rank = 8 with parallel.zero_stage = 3 is not supported"), std::string::npos) << fsdp;
  const std::string zero_save = launch_error({"lora.rank=8", "parallel.zero_stage=1"});
  EXPECT_NE(zero_save.find("with checkpoints (checkpoint.save or a train.resume path) and parallel.zero_stage = 1"),
            std::string::npos)
      << zero_save;
  EXPECT_EQ(launch_error({"lora.rank=8", "parallel.zero_stage=1", "checkpoint.save="}), "(no error)");
}

}  // namespace
}  // namespace tessera
