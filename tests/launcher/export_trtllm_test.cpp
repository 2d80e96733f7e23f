// `tessera export --format trtllm` on CPU, read back against TensorRT-LLM's documented checkpoint
// layout (docs/source/architecture/checkpoint.md of TensorRT-LLM): config.json's fields, one
// rank{r}.safetensors per tensor-parallel rank with TensorRT-LLM's tensor names and [out, in]
// shapes, and the rank shards put back together equal the Hugging Face export of the same
// checkpoint (itself checked against transformers on the GPU machine): qkv as this rank's
// query heads then its keys then its values, dense and proj split by input columns, fc/gate and
// lm_head by rows (lm_head padded with zero rows to a multiple of tp). The engine build is not run.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <nlohmann/json.hpp>

#include "core/ops/ops.h"
#include "data/data_test_util.h"
#include "launcher/checkpoint.h"
#include "launcher/export_command.h"
#include "launcher/recipe.h"
#include "launcher/safetensors.h"
#include "launcher/train_config.h"
#include "models/gpt_model.h"

namespace tessera {
namespace {

using testing::TemporaryFolder;

const char* kGpt2Model =
    "model:\n  preset: gpt2-124m\n  num_layers: 2\n  hidden_size: 32\n  num_attention_heads: 4\n"
    "  ffn_hidden_size: 48\n  max_position_embeddings: 64\n";
const char* kLlamaModel =
    "model:\n  preset: llama-tiny\n  num_layers: 2\n  hidden_size: 32\n  num_attention_heads: 4\n"
    "  num_query_groups: 2\n  ffn_hidden_size: 48\n  max_position_embeddings: 64\n";

class TrtllmExport : public ::testing::Test {
 protected:
  void save(const std::string& model_yaml) {
    const Recipe recipe = Recipe::parse(model_yaml + "train:\n  micro_batch_size: 1\n  global_batch_size: 1\n"
                                                     "  train_iters: 1\ndata:\n  data_path: [unused]\n",
                                        "test recipe");
    config_ = model_config_from_recipe(recipe);
    GptModel model(config_, 5);
    TrainingCheckpoint checkpoint;
    checkpoint.config_yaml = recipe.resolved_yaml();
    for (const auto& [name, p] : model.named_parameters()) checkpoint.model[name] = {p.detach().clone(), p.dtype()};
    write_checkpoint_file(folder_.file("iter_0000001.h5"), checkpoint);
  }

  void run_export(const std::string& format, const std::string& output, int tp = 1) {
    ExportCommandOptions options;
    options.checkpoint = folder_.file("iter_0000001.h5");
    options.format = format;
    options.output = folder_.file(output);
    options.tp_size = tp;
    options.quiet = true;
    run_export_command(options);
  }

  std::map<std::string, Tensor> read(const std::string& file) {
    std::map<std::string, Tensor> tensors;
    for (auto& [name, t] : read_safetensors(folder_.file(file)).tensors) tensors[name] = t;
    return tensors;
  }

  static void expect_equal(const Tensor& got, const Tensor& want, const std::string& what) {
    ASSERT_EQ(got.shape(), want.shape()) << what;
    EXPECT_EQ(got.to_vector<float>(), want.contiguous().to_vector<float>()) << what;
  }

  // The names a rank file must hold, from the documented layout.
  std::set<std::string> expected_names(bool llama) const {
    std::set<std::string> names = {"transformer.vocab_embedding.weight", "transformer.ln_f.weight", "lm_head.weight"};
    if (!llama) names.insert({"transformer.position_embedding.weight", "transformer.ln_f.bias"});
    for (int64_t l = 0; l < config_.num_layers; ++l) {
      const std::string p = "transformer.layers." + std::to_string(l) + ".";
      for (const char* n : {"input_layernorm.weight", "attention.qkv.weight", "attention.dense.weight",
                            "post_layernorm.weight", "mlp.fc.weight", "mlp.proj.weight"})
        names.insert(p + n);
      if (llama) names.insert(p + "mlp.gate.weight");
      if (!llama)
        for (const char* n : {"input_layernorm.bias", "attention.qkv.bias", "attention.dense.bias",
                              "post_layernorm.bias", "mlp.fc.bias", "mlp.proj.bias"})
          names.insert(p + n);
    }
    return names;
  }

  TemporaryFolder folder_;
  TransformerConfig config_;
};

std::set<std::string> names_of(const std::map<std::string, Tensor>& tensors) {
  std::set<std::string> names;
  for (const auto& [name, t] : tensors) names.insert(name);
  return names;
}

TEST_F(TrtllmExport, Gpt2TwoRanksReassembleToTheHfExport) {
  save(kGpt2Model);
  run_export("hf", "hf");
  run_export("trtllm", "trt", 2);
  const std::map<std::string, Tensor> hf = read("hf/model.safetensors");
  std::ifstream in(folder_.file("trt/config.json"));
  const nlohmann::json config = nlohmann::json::parse(in);
  EXPECT_EQ(config["architecture"], "GPTForCausalLM");
  EXPECT_EQ(config["dtype"], "float32");
  EXPECT_EQ(config["vocab_size"], config_.vocab_size);
  EXPECT_EQ(config["hidden_size"], 32);
  EXPECT_EQ(config["num_hidden_layers"], 2);
  EXPECT_EQ(config["num_attention_heads"], 4);
  EXPECT_EQ(config["num_key_value_heads"], 4);
  EXPECT_EQ(config["intermediate_size"], 48);
  EXPECT_EQ(config["hidden_act"], "gelu");
  EXPECT_EQ(config["position_embedding_type"], "learned_absolute");
  EXPECT_EQ(config["mapping"]["world_size"], 2);
  EXPECT_EQ(config["mapping"]["tp_size"], 2);
  EXPECT_EQ(config["mapping"]["pp_size"], 1);

  const std::map<std::string, Tensor> r0 = read("trt/rank0.safetensors"), r1 = read("trt/rank1.safetensors");
  EXPECT_EQ(names_of(r0), expected_names(false));
  EXPECT_EQ(names_of(r1), expected_names(false));
  const int64_t C = 32, half = C / 2;
  for (int64_t l = 0; l < 2; ++l) {
    const std::string p = "transformer.layers." + std::to_string(l) + ".", h = "transformer.h." + std::to_string(l) + ".";
    const Tensor c_attn = hf.at(h + "attn.c_attn.weight").transpose(0, 1).contiguous();  // [3C, C]: Q; K; V
    for (int r = 0; r < 2; ++r) {
      const Tensor& qkv = (r == 0 ? r0 : r1).at(p + "attention.qkv.weight");
      ASSERT_EQ(qkv.shape(), (Shape{3 * half, C}));
      for (int block = 0; block < 3; ++block)  // this rank's heads of Q, then of K, then of V
        expect_equal(qkv.narrow(0, block * half, half), c_attn.narrow(0, block * C + r * half, half),
                     p + "qkv block " + std::to_string(block) + " rank " + std::to_string(r));
    }
    expect_equal(cat({r0.at(p + "attention.dense.weight"), r1.at(p + "attention.dense.weight")}, 1),
                 hf.at(h + "attn.c_proj.weight").transpose(0, 1), p + "dense");
    expect_equal(r0.at(p + "attention.dense.bias"), hf.at(h + "attn.c_proj.bias"), p + "dense bias (whole)");
    expect_equal(cat({r0.at(p + "mlp.fc.weight"), r1.at(p + "mlp.fc.weight")}, 0),
                 hf.at(h + "mlp.c_fc.weight").transpose(0, 1), p + "fc");
    expect_equal(cat({r0.at(p + "mlp.proj.weight"), r1.at(p + "mlp.proj.weight")}, 1),
                 hf.at(h + "mlp.c_proj.weight").transpose(0, 1), p + "proj");
    expect_equal(r1.at(p + "input_layernorm.bias"), hf.at(h + "ln_1.bias"), p + "ln_1");
  }
  expect_equal(r1.at("transformer.vocab_embedding.weight"), hf.at("transformer.wte.weight"), "embedding (whole)");
  expect_equal(r0.at("transformer.position_embedding.weight"), hf.at("transformer.wpe.weight"), "positions");
  // GPT-2's 50257 rows padded to 50258 for tp 2: rank 1's last row is zero; the rest is the tied table.
  const Tensor head = cat({r0.at("lm_head.weight"), r1.at("lm_head.weight")}, 0);
  ASSERT_EQ(head.size(0), config_.vocab_size + 1);
  expect_equal(head.narrow(0, 0, config_.vocab_size), hf.at("transformer.wte.weight"), "lm_head");
  EXPECT_EQ(sum(abs(head.narrow(0, config_.vocab_size, 1))).item(), 0.0f);
}

TEST_F(TrtllmExport, LlamaGqaSwigluSplitsLikeTensorRtLlm) {
  save(kLlamaModel);
  run_export("hf", "hf");
  run_export("trtllm", "trt", 2);
  const std::map<std::string, Tensor> hf = read("hf/model.safetensors");
  std::ifstream in(folder_.file("trt/config.json"));
  const nlohmann::json config = nlohmann::json::parse(in);
  EXPECT_EQ(config["architecture"], "LlamaForCausalLM");
  EXPECT_EQ(config["num_key_value_heads"], 2);
  EXPECT_EQ(config["hidden_act"], "silu");
  EXPECT_EQ(config["position_embedding_type"], "rope_gpt_neox");
  EXPECT_DOUBLE_EQ(config["rotary_base"].get<double>(), config_.rotary_base);
  const std::map<std::string, Tensor> r0 = read("trt/rank0.safetensors"), r1 = read("trt/rank1.safetensors");
  EXPECT_EQ(names_of(r0), expected_names(true));
  const int64_t D = 8;  // head dim 32 / 4; each rank: 2 query heads and 1 kv head
  for (int64_t l = 0; l < 2; ++l) {
    const std::string p = "transformer.layers." + std::to_string(l) + ".", h = "model.layers." + std::to_string(l) + ".";
    for (int r = 0; r < 2; ++r) {
      const Tensor& qkv = (r == 0 ? r0 : r1).at(p + "attention.qkv.weight");
      ASSERT_EQ(qkv.shape(), (Shape{4 * D, 32}));
      expect_equal(qkv.narrow(0, 0, 2 * D), hf.at(h + "self_attn.q_proj.weight").narrow(0, r * 2 * D, 2 * D), p + "q");
      expect_equal(qkv.narrow(0, 2 * D, D), hf.at(h + "self_attn.k_proj.weight").narrow(0, r * D, D), p + "k");
      expect_equal(qkv.narrow(0, 3 * D, D), hf.at(h + "self_attn.v_proj.weight").narrow(0, r * D, D), p + "v");
    }
    expect_equal(cat({r0.at(p + "mlp.fc.weight"), r1.at(p + "mlp.fc.weight")}, 0), hf.at(h + "mlp.gate_proj.weight"),
                 p + "fc = gate_proj");
    expect_equal(cat({r0.at(p + "mlp.gate.weight"), r1.at(p + "mlp.gate.weight")}, 0), hf.at(h + "mlp.up_proj.weight"),
                 p + "gate = up_proj");
    expect_equal(cat({r0.at(p + "mlp.proj.weight"), r1.at(p + "mlp.proj.weight")}, 1),
                 hf.at(h + "mlp.down_proj.weight"), p + "proj = down_proj");
    expect_equal(cat({r0.at(p + "attention.dense.weight"), r1.at(p + "attention.dense.weight")}, 1),
                 hf.at(h + "self_attn.o_proj.weight"), p + "dense = o_proj");
  }
}

TEST_F(TrtllmExport, OneRankInBf16AndBadTpSizes) {
  save(kLlamaModel);
  ExportCommandOptions options;
  options.checkpoint = folder_.file("iter_0000001.h5");
  options.format = "trtllm";
  options.output = folder_.file("bf16");
  options.dtype = "bf16";
  options.quiet = true;
  run_export_command(options);
  const std::map<std::string, Tensor> r0 = read("bf16/rank0.safetensors");
  EXPECT_FALSE(std::filesystem::exists(folder_.file("bf16/rank1.safetensors")));
  EXPECT_EQ(r0.at("transformer.layers.0.attention.qkv.weight").dtype(), DType::BF16);
  EXPECT_EQ(r0.at("transformer.layers.0.attention.qkv.weight").shape(), (Shape{64, 32}));
  options.output = folder_.file("tp3");
  options.tp_size = 3;  // 4 heads, 2 kv heads
  try {
    run_export_command(options);
    FAIL() << "tp 3 over 4 heads was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--tp-size 3 must divide the attention heads (4)"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace tessera
