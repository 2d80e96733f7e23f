#include "launcher/hf_import.h"

#include <fmt/format.h>

#include <fstream>
#include <set>

#include "core/check.h"
#include "launcher/checkpoint_directory.h"
#include "launcher/export_progress.h"
#include "launcher/hf_format.h"
#include "launcher/recipe.h"
#include "launcher/safetensors.h"
#include "launcher/train_config.h"

namespace tessera {
namespace {

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  TS_CHECK(in.good(), "import: cannot open ", path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    TS_CHECK(false, "import: ", path.string(), " is not valid JSON (", e.what(), ")");
  }
  return {};
}

// The safetensors files of the folder: the index's shards, or model.safetensors.
std::vector<std::filesystem::path> weight_files(const std::filesystem::path& input) {
  const std::filesystem::path index = input / "model.safetensors.index.json";
  if (std::filesystem::exists(index)) {
    const nlohmann::json j = read_json(index);
    TS_CHECK(j.contains("weight_map") && j.at("weight_map").is_object(), "import: ", index.string(),
             " has no weight_map object");
    std::set<std::string> files;
    for (const auto& [name, file] : j.at("weight_map").items()) files.insert(file.get<std::string>());
    std::vector<std::filesystem::path> paths;
    for (const std::string& file : files) paths.push_back(input / file);
    return paths;
  }
  TS_CHECK(std::filesystem::exists(input / "model.safetensors"), "import: ", input.string(),
           " has neither model.safetensors nor model.safetensors.index.json (save the model with "
           "save_pretrained(..., safe_serialization=True))");
  return {input / "model.safetensors"};
}

// A preset whose fields that recipes cannot override equal config's.
std::string matching_preset(const TransformerConfig& c) {
  std::string why;
  for (const std::string& name : transformer_preset_names()) {
    const TransformerConfig p = transformer_preset(name);
    if (p.normalization != c.normalization || p.activation != c.activation ||
        p.position_embedding != c.position_embedding)
      continue;
    std::string mismatch;
    if (p.vocab_size != c.vocab_size) mismatch = fmt::format("vocab_size {} (presets of this family: ", c.vocab_size);
    else if (p.norm_epsilon != c.norm_epsilon) mismatch = fmt::format("norm epsilon {} (", c.norm_epsilon);
    else if (p.add_bias_linear != c.add_bias_linear) mismatch = fmt::format("linear biases {} (", c.add_bias_linear);
    else if (p.rope_scaling.factor != c.rope_scaling.factor ||
             (c.rope_scaling.factor != 0.0 &&
              (p.rope_scaling.low_freq_factor != c.rope_scaling.low_freq_factor ||
               p.rope_scaling.high_freq_factor != c.rope_scaling.high_freq_factor ||
               p.rope_scaling.original_max_position != c.rope_scaling.original_max_position)))
      mismatch = fmt::format("rope scaling factor {} (", c.rope_scaling.factor);
    if (mismatch.empty()) return name;
    if (why.empty()) why = mismatch;
    why += name + " ";
  }
  TS_CHECK(false, "import: the model's ", why.empty() ? std::string("architecture (") : why,
           "): a Tessera recipe cannot express it yet; recipes set only a preset's sizes, not its vocabulary, norm "
           "epsilon, biases or rope scaling");
  return "";
}

std::string copy_tokenizer(const std::filesystem::path& input, const std::filesystem::path& output) {
  const std::filesystem::path dir = output / "tokenizer";
  auto copy = [&](const std::string& file) {
    std::filesystem::create_directories(dir);
    std::filesystem::copy_file(input / file, dir / file, std::filesystem::copy_options::overwrite_existing);
    return std::filesystem::absolute(dir / file).string();
  };
  if (std::filesystem::exists(input / "tokenizer.json"))
    return "  tokenizer_type: HuggingFaceTokenizer\n  tokenizer_model: " + copy("tokenizer.json") + "\n";
  if (std::filesystem::exists(input / "vocab.json") && std::filesystem::exists(input / "merges.txt"))
    return "  vocab_file: " + copy("vocab.json") + "\n  merge_file: " + copy("merges.txt") + "\n";
  return "";
}

}  // namespace

HfModelFolder read_hf_model_folder(const std::filesystem::path& input, std::FILE* progress) {
  TS_CHECK(std::filesystem::is_directory(input), "import: --input ", input.string(),
           " is not a folder (give the folder save_pretrained wrote)");
  HfModelFolder folder;
  folder.config = config_from_hf_json(read_json(input / "config.json"), (input / "config.json").string());
  const std::vector<std::filesystem::path> files = weight_files(input);
  uint64_t total = 0, done = 0;
  for (const auto& file : files) total += std::filesystem::file_size(file);
  ByteProgress meter("import hf " + input.string(), total, progress);
  for (const auto& file : files) {
    SafetensorsContents contents = read_safetensors(file.string());
    for (auto& [name, tensor] : contents.tensors) {
      TS_CHECK(!folder.tensors.contains(name), "import: tensor ", name, " appears in two files of ", input.string());
      folder.dtypes[name] = tensor.dtype();
      folder.tensors[name] = tensor.to(DType::F32);
    }
    done += std::filesystem::file_size(file);
    meter.update(done);
  }
  meter.finish();
  return folder;
}

std::string recipe_yaml_for_config(const TransformerConfig& c, const std::string& tokenizer_keys) {
  const std::string preset = matching_preset(c);
  std::string yaml = fmt::format(
      "# Imported from Hugging Face; data and train are placeholders for the fine-tuning recipe.\n"
      "model:\n  preset: {}\n  num_layers: {}\n  hidden_size: {}\n  num_attention_heads: {}\n"
      "  num_query_groups: {}\n  ffn_hidden_size: {}\n  max_position_embeddings: {}\n"
      "  make_vocab_size_divisible_by: {}\n  untie_embeddings_and_output_weights: {}\n",
      preset, c.num_layers, c.hidden_size, c.num_attention_heads, c.num_query_groups, c.ffn_hidden_size,
      c.max_position_embeddings, c.make_vocab_size_divisible_by, c.tie_word_embeddings ? "false" : "true");
  if (c.position_embedding == PositionEmbedding::Rope) yaml += fmt::format("  rotary_base: {}\n", c.rotary_base);
  yaml += "data:\n  data_path: [REPLACE_WITH_YOUR_DATA]\n" + tokenizer_keys;
  yaml += "train:\n  micro_batch_size: 1\n  global_batch_size: 1\n  train_iters: 1\n";
  // The recipe must rebuild exactly this model: check every field the conversion relies on.
  const TransformerConfig rebuilt = model_config_from_recipe(Recipe::parse(yaml, "the imported recipe"));
  const bool same = rebuilt.num_layers == c.num_layers && rebuilt.hidden_size == c.hidden_size &&
                    rebuilt.num_attention_heads == c.num_attention_heads &&
                    rebuilt.num_query_groups == c.num_query_groups && rebuilt.ffn_hidden_size == c.ffn_hidden_size &&
                    rebuilt.vocab_size == c.vocab_size && rebuilt.padded_vocab_size() == c.padded_vocab_size() &&
                    rebuilt.max_position_embeddings == c.max_position_embeddings &&
                    rebuilt.norm_epsilon == c.norm_epsilon && rebuilt.rotary_base == c.rotary_base &&
                    rebuilt.tie_word_embeddings == c.tie_word_embeddings &&
                    rebuilt.add_bias_linear == c.add_bias_linear &&
                    rebuilt.rope_scaling.factor == c.rope_scaling.factor;
  TS_CHECK(same, "import: the recipe written for this model (preset ", preset,
           ") does not rebuild its configuration; this is a bug in the import");
  return yaml;
}

ImportResult import_hf(const std::filesystem::path& input, const std::filesystem::path& output, std::FILE* progress) {
  HfModelFolder folder = read_hf_model_folder(input, progress);
  const TransformerConfig& c = folder.config;
  // Check the recipe before writing anything.
  recipe_yaml_for_config(c, "");
  std::filesystem::create_directories(output);
  TrainingCheckpoint checkpoint;
  checkpoint.config_yaml = recipe_yaml_for_config(c, copy_tokenizer(input, output));
  const std::map<std::string, Tensor> ours = from_hf_tensors(c, folder.tensors, input.string());
  // A parameter remembers the dtype of the file tensor it came from (the embedding's for all).
  const HfArchitecture arch = hf_architecture(c);
  const DType dtype = folder.dtypes.at(arch == HfArchitecture::Gpt2 ? "transformer.wte.weight" : "model.embed_tokens.weight");
  for (const auto& [name, value] : ours) checkpoint.model[name] = {value.contiguous(), dtype};
  const SavedCheckpoint saved = save_checkpoint(output.string(), checkpoint, /*keep_last=*/1,
                                                [](const std::string& message) { fmt::print(stderr, "warning: {}\n", message); });
  return {saved.path, c};
}

}  // namespace tessera
