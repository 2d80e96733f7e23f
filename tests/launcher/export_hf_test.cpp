// `tessera export --format hf` and `tessera import --format hf`, on CPU:
//   - export then import gives back every parameter bitwise (the padded vocabulary rows, which
//     the files do not hold, come back as zeros), for a GPT-2 model (fused Conv1D QKV, padded
//     vocabulary, tied) and a Llama model (GQA, SwiGLU, untied), in one file and sharded;
//   - the files hold transformers' names and shapes, and single elements sit where transformers'
//     layouts put them, located by index arithmetic from models/gpt_model.h's layout (not by the
//     exporter's reshapes);
//   - config.json carries the configuration import rebuilds, and the GPT-2 tokenizer files load
//     back to the same ids;
//   - safetensors files that are truncated or inconsistent are refused naming the file and tensor.
// Logits through transformers itself are checked by tests/reference/hf_export_check.py (GPU machine).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "data/tokenizer_test_util.h"
#include "launcher/checkpoint.h"
#include "launcher/checkpoint_directory.h"
#include "launcher/export_command.h"
#include "launcher/import_command.h"
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

std::string recipe_yaml(const std::string& model, bool tokenizer) {
  std::string yaml = model + "train:\n  micro_batch_size: 1\n  global_batch_size: 1\n  train_iters: 1\n" +
                     "data:\n  data_path: [unused]\n";
  if (tokenizer)
    yaml += "  vocab_file: " + (testing::gpt2_fixture_dir() / "encoder.json").string() +
            "\n  merge_file: " + (testing::gpt2_fixture_dir() / "vocab.bpe").string() + "\n";
  return yaml;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

class HfExport : public ::testing::Test {
 protected:
  // Saves a model of `model_yaml` with random weights; returns its parameters by name.
  std::map<std::string, Tensor> save(const std::string& model_yaml, bool tokenizer) {
    const Recipe recipe = Recipe::parse(recipe_yaml(model_yaml, tokenizer), "test recipe");
    config_ = model_config_from_recipe(recipe);
    GptModel model(config_, 3);
    TrainingCheckpoint checkpoint;
    checkpoint.config_yaml = recipe.resolved_yaml();
    std::map<std::string, Tensor> parameters;
    for (const auto& [name, p] : model.named_parameters()) {
      checkpoint.model[name] = {p.detach().clone(), p.dtype()};
      parameters[name] = p.detach().clone();
    }
    write_checkpoint_file(folder_.file("iter_0000001.h5"), checkpoint);
    return parameters;
  }

  void export_hf(const std::string& output, double shard_mb = 5000.0) {
    ExportCommandOptions options;
    options.checkpoint = folder_.file("iter_0000001.h5");
    options.format = "hf";
    options.output = folder_.file(output);
    options.max_shard_size_mb = shard_mb;
    options.quiet = true;
    run_export_command(options);
  }

  std::map<std::string, Tensor> import_hf(const std::string& input, const std::string& output) {
    ImportCommandOptions options;
    options.input = folder_.file(input);
    options.output = folder_.file(output);
    options.quiet = true;
    run_import_command(options);
    std::optional<LoadedCheckpoint> loaded = load_latest_checkpoint(folder_.file(output), [](const std::string&) {});
    EXPECT_TRUE(loaded.has_value());
    std::map<std::string, Tensor> parameters;
    for (const auto& [name, saved] : loaded->checkpoint.model) parameters[name] = saved.value;
    // The imported recipe rebuilds the same configuration.
    const TransformerConfig rebuilt =
        model_config_from_recipe(Recipe::parse(loaded->checkpoint.config_yaml, "imported recipe"));
    EXPECT_EQ(rebuilt.parameter_count(), config_.parameter_count());
    EXPECT_EQ(rebuilt.num_query_groups, config_.num_query_groups);
    EXPECT_EQ(rebuilt.tie_word_embeddings, config_.tie_word_embeddings);
    return parameters;
  }

  // Bitwise equal, except padded vocabulary rows, which must be zero after import.
  void expect_round_trip(const std::map<std::string, Tensor>& original, const std::map<std::string, Tensor>& back) {
    ASSERT_EQ(original.size(), back.size());
    for (const auto& [name, value] : original) {
      SCOPED_TRACE(name);
      ASSERT_TRUE(back.contains(name));
      const Tensor& other = back.at(name);
      ASSERT_EQ(other.shape(), value.shape());
      const bool vocab = name == "embedding.word_embeddings.weight" || name == "output_layer.weight";
      const int64_t real = vocab ? config_.vocab_size * value.size(1) : value.numel();
      const std::vector<float> a = value.to_vector<float>(), b = other.to_vector<float>();
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), size_t(real) * sizeof(float)));
      for (size_t i = size_t(real); i < b.size(); ++i) ASSERT_EQ(b[i], 0.0f) << "padded row element " << i;
    }
  }

  std::map<std::string, Tensor> read_all(const std::string& folder) {
    std::map<std::string, Tensor> tensors;
    for (const auto& entry : std::filesystem::directory_iterator(folder_.file(folder))) {
      if (entry.path().extension() != ".safetensors") continue;
      for (auto& [name, t] : read_safetensors(entry.path().string()).tensors) tensors[name] = t;
    }
    return tensors;
  }

  TemporaryFolder folder_;
  TransformerConfig config_;
};

TEST_F(HfExport, Gpt2RoundTripsBitwiseAndUsesConv1dLayout) {
  const auto original = save(kGpt2Model, true);
  ASSERT_GT(config_.padded_vocab_size(), config_.vocab_size);  // the unpadding is exercised
  export_hf("hf");
  const auto files = read_all("hf");
  const int64_t C = 32, V = config_.vocab_size, D = 8;
  EXPECT_EQ(files.at("transformer.wte.weight").shape(), (Shape{V, C}));
  EXPECT_FALSE(files.contains("lm_head.weight"));  // tied: transformers re-ties it
  EXPECT_EQ(files.at("transformer.h.1.attn.c_attn.weight").shape(), (Shape{C, 3 * C}));
  EXPECT_EQ(files.at("transformer.h.1.mlp.c_fc.weight").shape(), (Shape{C, 48}));
  EXPECT_EQ(files.size(), size_t(2 + 2 * 12 + 2));
  // Key of head h, dim i, input c: ours at row (h (1 + 2) + 1) D + i (groups of [q, k, v]),
  // transformers' Conv1D at [c, C + h D + i].
  const std::vector<float> ours = original.at("decoder.layers.1.self_attention.linear_qkv.weight").to_vector<float>();
  const std::vector<float> theirs = files.at("transformer.h.1.attn.c_attn.weight").to_vector<float>();
  for (int64_t h : {0, 3})
    for (int64_t i : {0, 5})
      for (int64_t c : {0, 31}) EXPECT_EQ(theirs[size_t(c * 3 * C + C + h * D + i)], ours[size_t(((h * 3 + 1) * D + i) * C + c)]);
  const nlohmann::json config = read_json(folder_.file("hf/config.json"));
  EXPECT_EQ(config.at("architectures")[0], "GPT2LMHeadModel");
  EXPECT_EQ(config.at("vocab_size"), V);
  EXPECT_EQ(config.at("eos_token_id"), 50256);
  // The tokenizer files are GPT-2's: they load back to the same ids.
  const Tokenizer exported = Tokenizer::load(folder_.path() / "hf");
  EXPECT_EQ(exported.encode("Hello, exported world!"), testing::gpt2_tokenizer().encode("Hello, exported world!"));
  expect_round_trip(original, import_hf("hf", "imported"));
}

TEST_F(HfExport, LlamaRoundTripsBitwiseShardedWithSplitProjections) {
  const auto original = save(kLlamaModel, false);
  export_hf("hf", /*shard_mb=*/0.02);  // 20 kB shards: several files
  const nlohmann::json index = read_json(folder_.file("hf/model.safetensors.index.json"));
  std::set<std::string> shards;
  for (const auto& [name, file] : index.at("weight_map").items()) shards.insert(file.get<std::string>());
  EXPECT_GT(shards.size(), 2u);
  const auto files = read_all("hf");
  EXPECT_EQ(files.size(), index.at("weight_map").size());
  const int64_t C = 32, D = 8, F = 48;
  EXPECT_EQ(files.at("model.layers.0.self_attn.q_proj.weight").shape(), (Shape{4 * D, C}));
  EXPECT_EQ(files.at("model.layers.0.self_attn.k_proj.weight").shape(), (Shape{2 * D, C}));
  EXPECT_EQ(files.at("model.layers.0.mlp.up_proj.weight").shape(), (Shape{F, C}));
  EXPECT_TRUE(files.contains("lm_head.weight"));  // llama-tiny is untied
  // Query head 3 (group 1, its second query) dim i: ours at row (1 (2 + 2) + 1) D + i; value
  // head 1: ours at row (1 (2 + 2) + 3) D + i. Up rows follow the F gate rows in fc1.
  const std::vector<float> qkv = original.at("decoder.layers.0.self_attention.linear_qkv.weight").to_vector<float>();
  const std::vector<float> q = files.at("model.layers.0.self_attn.q_proj.weight").to_vector<float>();
  const std::vector<float> v = files.at("model.layers.0.self_attn.v_proj.weight").to_vector<float>();
  const std::vector<float> fc1 = original.at("decoder.layers.0.mlp.linear_fc1.weight").to_vector<float>();
  const std::vector<float> up = files.at("model.layers.0.mlp.up_proj.weight").to_vector<float>();
  for (int64_t i : {0, 7})
    for (int64_t c : {0, 31}) {
      EXPECT_EQ(q[size_t((3 * D + i) * C + c)], qkv[size_t((5 * D + i) * C + c)]);
      EXPECT_EQ(v[size_t((1 * D + i) * C + c)], qkv[size_t((7 * D + i) * C + c)]);
      EXPECT_EQ(up[size_t(i * C + c)], fc1[size_t((F + i) * C + c)]);
    }
  const nlohmann::json config = read_json(folder_.file("hf/config.json"));
  EXPECT_EQ(config.at("architectures")[0], "LlamaForCausalLM");
  EXPECT_EQ(config.at("num_key_value_heads"), 2);
  EXPECT_EQ(config.at("tie_word_embeddings"), false);
  expect_round_trip(original, import_hf("hf", "imported"));
}

TEST_F(HfExport, ImportRefusesAConfigurationNoRecipeExpresses) {
  save(kLlamaModel, false);
  export_hf("hf");
  nlohmann::json config = read_json(folder_.file("hf/config.json"));
  config["rms_norm_eps"] = 1e-6;
  std::ofstream(folder_.file("hf/config.json")) << config.dump();
  try {
    import_hf("hf", "imported");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("norm epsilon"), std::string::npos) << e.what();
  }
}

TEST_F(HfExport, BadOptionsFailWithAReason) {
  save(kGpt2Model, true);
  ExportCommandOptions options;
  options.checkpoint = folder_.file("iter_0000001.h5");
  options.format = "gguf";
  options.output = folder_.file("gguf");
  options.quiet = true;
  options.dtype = "q4_0";
  EXPECT_THROW(
      try { run_export_command(options); } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("--format gguf takes"), std::string::npos) << e.what();
        throw;
      },
      Error);
  options.format = "hf";
  options.dtype = "q8_0";
  EXPECT_THROW(run_export_command(options), Error);
  options.checkpoint = folder_.file("missing.h5");
  EXPECT_THROW(run_export_command(options), Error);
}

TEST(Safetensors, RoundTripsAndRefusesBrokenFiles) {
  TemporaryFolder folder;
  const std::string path = folder.file("t.safetensors");
  const Tensor a = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor b = Tensor::from_vector(std::vector<float>{-1.5f, 0.25f}, {2}).to(DType::BF16);
  write_safetensors(path, {{"a", a}, {"b", b}}, {{"format", "pt"}});
  // The header as the format defines it (8-byte length, JSON, data back to back).
  const std::string bytes = testing::read_file_bytes(path);
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  EXPECT_EQ(header % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + header + 6 * 4 + 2 * 2);
  const nlohmann::json j = nlohmann::json::parse(bytes.substr(8, header));
  EXPECT_EQ(j.at("b").at("dtype"), "BF16");
  EXPECT_EQ(j.at("b").at("data_offsets"), (std::vector<int>{24, 28}));
  SafetensorsContents back = read_safetensors(path);
  ASSERT_EQ(back.tensors.size(), 2u);
  EXPECT_EQ(back.tensors[0].second.to_vector<float>(), a.to_vector<float>());
  EXPECT_EQ(back.tensors[1].second.dtype(), DType::BF16);
  EXPECT_EQ(back.tensors[1].second.to_vector<float>(), (std::vector<float>{-1.5f, 0.25f}));
  EXPECT_EQ(back.metadata.at("format"), "pt");

  testing::write_file_bytes(path, bytes.substr(0, bytes.size() - 2));  // truncated
  try {
    read_safetensors(path);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tessera
