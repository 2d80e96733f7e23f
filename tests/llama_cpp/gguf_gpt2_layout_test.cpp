// The GGUF export's `gpt2` architecture read back byte by byte, without llama.cpp (so it runs
// wherever the other CPU tests do; gguf_llama_cpp_test proves the file in llama.cpp itself). A
// small GPT-2-shaped model with an untied output layer is exported in f32 and f16 and parsed with
// a reader written here from the GGUF v3 spec; checked against llama.cpp's `gpt2` loader
// (llama-model.cpp) and against our parameters by index arithmetic:
//   - the hyperparameter keys, u32 / f32 as llama.cpp reads them, and the embedded tokenizer;
//   - tensor names in order, ggml dims (fastest first) and types (f16 matrices, f32 rest);
//   - attn_qkv row part P C + h D + d (P: 0 q, 1 k, 2 v) = our linear_qkv row (3 h + P) D + d,
//     every other matrix = ours as [out, in], vocabulary rows unpadded.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <variant>

#include "core/half.h"
#include "data/tokenizer_test_util.h"
#include "launcher/checkpoint.h"
#include "launcher/export_command.h"
#include "launcher/recipe.h"
#include "launcher/train_config.h"
#include "models/gpt_model.h"

namespace tessera {
namespace {

// A parsed GGUF file: metadata (arrays by element count only) and tensors.
struct GgufTensor {
  std::vector<uint64_t> dims;  // ggml order: fastest-varying first
  uint32_t type = 0;
  const uint8_t* data = nullptr;
};
using GgufValue = std::variant<uint32_t, float, bool, std::string, uint64_t /* array length */>;
struct GgufFile {
  std::string bytes;
  std::map<std::string, GgufValue> metadata;
  std::vector<std::pair<std::string, GgufTensor>> tensors;
};

GgufFile read_gguf(const std::string& path) {
  GgufFile f;
  std::ifstream in(path, std::ios::binary);
  f.bytes.assign(std::istreambuf_iterator<char>(in), {});
  size_t at = 0;
  auto take = [&]<typename T>(T*) {
    T v;
    if (at + sizeof(T) > f.bytes.size()) throw std::runtime_error("gguf file ends early");
    std::memcpy(&v, f.bytes.data() + at, sizeof(T));
    at += sizeof(T);
    return v;
  };
  auto u32 = [&] { return take((uint32_t*)nullptr); };
  auto u64 = [&] { return take((uint64_t*)nullptr); };
  auto str = [&] {
    const uint64_t n = u64();
    std::string s = f.bytes.substr(at, n);
    at += n;
    return s;
  };
  // Skips one value of a scalar or string type (array elements).
  auto skip = [&](uint32_t type) {
    if (type == 8) {
      str();
    } else {
      at += type == 4 || type == 5 || type == 6 ? 4 : type == 7 ? 1 : throw std::runtime_error("unexpected type");
    }
  };
  if (f.bytes.substr(0, 4) != "GGUF") throw std::runtime_error("no GGUF magic");
  at = 4;
  EXPECT_EQ(u32(), 3u) << "GGUF version";
  const uint64_t n_tensors = u64(), n_kv = u64();
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string key = str();
    const uint32_t type = u32();
    if (type == 4)
      f.metadata[key] = u32();
    else if (type == 6)
      f.metadata[key] = take((float*)nullptr);
    else if (type == 7)
      f.metadata[key] = take((uint8_t*)nullptr) != 0;
    else if (type == 8)
      f.metadata[key] = str();
    else if (type == 9) {
      const uint32_t element = u32();
      const uint64_t count = u64();
      for (uint64_t e = 0; e < count; ++e) skip(element);
      f.metadata[key] = count;
    } else {
      throw std::runtime_error("metadata " + key + " has a type this reader does not expect");
    }
  }
  std::vector<uint64_t> offsets;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    const std::string name = str();
    const uint32_t dims = u32();
    for (uint32_t d = 0; d < dims; ++d) t.dims.push_back(u64());
    t.type = u32();
    offsets.push_back(u64());
    f.tensors.emplace_back(name, t);
  }
  const size_t data_start = (at + 31) / 32 * 32;
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    EXPECT_EQ(offsets[i] % 32, 0u) << f.tensors[i].first << " is not aligned";
    f.tensors[i].second.data = reinterpret_cast<const uint8_t*>(f.bytes.data()) + data_start + offsets[i];
  }
  return f;
}

float element(const GgufTensor& t, uint64_t index) {
  if (t.type == 0) {
    float v;
    std::memcpy(&v, t.data + 4 * index, 4);
    return v;
  }
  EXPECT_EQ(t.type, 1u) << "only f32 / f16 are read here";
  Half h;
  std::memcpy(&h.bits, t.data + 2 * index, 2);
  return h;
}

class GgufGpt2Layout : public ::testing::Test {
 protected:
  GgufGpt2Layout()
      : recipe_(Recipe::parse(
            "model:\n  preset: gpt2-124m\n  num_layers: 2\n  hidden_size: 64\n  num_attention_heads: 4\n"
            "  ffn_hidden_size: 96\n  max_position_embeddings: 32\n  untie_embeddings_and_output_weights: true\n"
            "train:\n  micro_batch_size: 1\n  global_batch_size: 1\n  train_iters: 1\n"
            "data:\n  data_path: [unused]\n  vocab_file: " +
                (testing::gpt2_fixture_dir() / "encoder.json").string() +
                "\n  merge_file: " + (testing::gpt2_fixture_dir() / "vocab.bpe").string() + "\n",
            "test recipe")),
        config_(model_config_from_recipe(recipe_)),
        model_(config_, 5) {
    // Every parameter random (GPT-2's init zeroes biases and sets norms to 1, which would hide a
    // misplaced bias or norm).
    TrainingCheckpoint checkpoint;
    checkpoint.config_yaml = recipe_.resolved_yaml();
    std::mt19937 random(7);
    std::normal_distribution<float> normal(0.0f, 0.5f);
    for (const auto& [name, parameter] : model_.named_parameters()) {
      std::vector<float> values(size_t(parameter.numel()));
      for (float& v : values) v = normal(random);
      checkpoint.model[name] = {Tensor::from_vector(values, parameter.shape()), DType::F32};
      ours_[name] = values;
    }
    checkpoint_ = folder_.file("iter_0000001.h5");
    write_checkpoint_file(checkpoint_, checkpoint);
  }

  GgufFile exported(const std::string& dtype) {
    ExportCommandOptions options;
    options.checkpoint = checkpoint_;
    options.format = "gguf";
    options.output = folder_.file(dtype);
    options.dtype = dtype;
    options.quiet = true;
    run_export_command(options);
    return read_gguf(options.output + "/model.gguf");
  }

  testing::TemporaryFolder folder_;
  Recipe recipe_;
  TransformerConfig config_;
  GptModel model_;
  std::string checkpoint_;
  std::map<std::string, std::vector<float>> ours_;
};

TEST_F(GgufGpt2Layout, MetadataIsWhatLlamaCppsGpt2LoaderReads) {
  const GgufFile f = exported("f32");
  const auto u32 = [&](const std::string& key) { return std::get<uint32_t>(f.metadata.at(key)); };
  EXPECT_EQ(std::get<std::string>(f.metadata.at("general.architecture")), "gpt2");
  EXPECT_EQ(u32("general.file_type"), 0u);
  EXPECT_EQ(u32("gpt2.context_length"), 32u);
  EXPECT_EQ(u32("gpt2.embedding_length"), 64u);
  EXPECT_EQ(u32("gpt2.block_count"), 2u);
  EXPECT_EQ(u32("gpt2.feed_forward_length"), 96u);
  EXPECT_EQ(u32("gpt2.attention.head_count"), 4u);
  EXPECT_EQ(std::get<float>(f.metadata.at("gpt2.attention.layer_norm_epsilon")), 1e-5f);
  EXPECT_EQ(std::get<std::string>(f.metadata.at("tokenizer.ggml.model")), "gpt2");
  EXPECT_EQ(std::get<std::string>(f.metadata.at("tokenizer.ggml.pre")), "gpt-2");
  EXPECT_EQ(std::get<uint64_t>(f.metadata.at("tokenizer.ggml.tokens")), uint64_t(config_.vocab_size));
  EXPECT_EQ(f.metadata.count("llama.block_count"), 0u);
}

TEST_F(GgufGpt2Layout, TensorsAreNamedShapedAndLaidOutAsLlamaCppReadsThem) {
  for (const std::string dtype : {"f32", "f16"}) {
    SCOPED_TRACE(dtype);
    const GgufFile f = exported(dtype);
    const uint64_t C = 64, F = 96, V = uint64_t(config_.vocab_size), D = 16;
    const uint32_t matrix = dtype == "f32" ? 0 : 1;
    // Every tensor in llama.cpp's gpt2 naming, in the order written, with its ggml dims.
    std::vector<std::pair<std::string, std::vector<uint64_t>>> expected = {{"token_embd.weight", {C, V}},
                                                                           {"position_embd.weight", {C, 32}}};
    for (int l = 0; l < 2; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      for (const auto& [name, dims] :
           std::vector<std::pair<std::string, std::vector<uint64_t>>>{{"attn_norm.weight", {C}},
                                                                      {"attn_norm.bias", {C}},
                                                                      {"attn_qkv.weight", {C, 3 * C}},
                                                                      {"attn_qkv.bias", {3 * C}},
                                                                      {"attn_output.weight", {C, C}},
                                                                      {"attn_output.bias", {C}},
                                                                      {"ffn_norm.weight", {C}},
                                                                      {"ffn_norm.bias", {C}},
                                                                      {"ffn_up.weight", {C, F}},
                                                                      {"ffn_up.bias", {F}},
                                                                      {"ffn_down.weight", {F, C}},
                                                                      {"ffn_down.bias", {C}}})
        expected.emplace_back(b + name, dims);
    }
    expected.push_back({"output_norm.weight", {C}});
    expected.push_back({"output_norm.bias", {C}});
    expected.push_back({"output.weight", {C, V}});
    ASSERT_EQ(f.tensors.size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      const auto& [name, t] = f.tensors[i];
      EXPECT_EQ(name, expected[i].first);
      EXPECT_EQ(t.dims, expected[i].second) << name;
      const bool is_matrix = t.dims.size() == 2 && name != "position_embd.weight";
      EXPECT_EQ(t.type, is_matrix ? matrix : 0u) << name;
    }
    // Values: each ggml tensor against ours, the row of ours each ggml row comes from.
    const float tolerance = dtype == "f32" ? 0.0f : 2e-3f;  // f16: half an ulp of values up to ~2.5
    auto expect_rows = [&](const std::string& gguf_name, const std::string& our_name, uint64_t cols,
                           const std::function<uint64_t(uint64_t)>& our_row) {
      const auto it =
          std::find_if(f.tensors.begin(), f.tensors.end(), [&](const auto& e) { return e.first == gguf_name; });
      ASSERT_NE(it, f.tensors.end()) << gguf_name;
      const std::vector<float>& mine = ours_.at(our_name);
      uint64_t rows = 1;
      for (uint64_t d : it->second.dims) rows *= d;
      rows /= cols;
      float worst = 0;
      for (uint64_t r = 0; r < rows; ++r)
        for (uint64_t c = 0; c < cols; ++c)
          worst = std::max(worst, std::fabs(element(it->second, r * cols + c) - mine[our_row(r) * cols + c]));
      EXPECT_LE(worst, tolerance) << gguf_name << " vs " << our_name;
    };
    const auto same = [](uint64_t r) { return r; };
    // Q, K, V blocks of C rows; ours grouped per head: head h's q, k, v of D rows each.
    const auto qkv_row = [&](uint64_t r) { return (r % C / D * 3 + r / C) * D + r % D; };
    expect_rows("token_embd.weight", "embedding.word_embeddings.weight", C, same);
    expect_rows("position_embd.weight", "embedding.position_embeddings.weight", C, same);
    expect_rows("output.weight", "output_layer.weight", C, same);
    for (int l = 0; l < 2; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".", p = "decoder.layers." + std::to_string(l) + ".";
      expect_rows(b + "attn_qkv.weight", p + "self_attention.linear_qkv.weight", C, qkv_row);
      expect_rows(b + "attn_qkv.bias", p + "self_attention.linear_qkv.bias", 1, qkv_row);
      expect_rows(b + "attn_output.weight", p + "self_attention.linear_proj.weight", C, same);
      expect_rows(b + "ffn_up.weight", p + "mlp.linear_fc1.weight", C, same);
      expect_rows(b + "ffn_down.weight", p + "mlp.linear_fc2.weight", F, same);
      expect_rows(b + "ffn_down.bias", p + "mlp.linear_fc2.bias", 1, same);
      expect_rows(b + "ffn_norm.bias", p + "pre_mlp_layernorm.bias", 1, same);
    }
  }
}

}  // namespace
}  // namespace tessera
