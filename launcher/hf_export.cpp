#include "launcher/hf_export.h"

#include <fmt/format.h>

#include <fstream>

#include "core/check.h"
#include "launcher/export_progress.h"
#include "launcher/hf_format.h"

namespace tessera {
namespace {

void write_json(const std::filesystem::path& path, const nlohmann::ordered_json& json) {
  std::ofstream out(path);
  out << json.dump(2) << "\n";
  TS_CHECK(out.good(), "export: writing ", path.string(), " failed");
}

std::string torch_dtype(DType dtype) {
  switch (dtype) {
    case DType::F16:
      return "float16";
    case DType::BF16:
      return "bfloat16";
    default:
      return "float32";
  }
}

}  // namespace

void write_hf_tokenizer_files(const ExportTokenizer& tokenizer, int64_t model_max_length,
                              const std::filesystem::path& output) {
  nlohmann::ordered_json config = {{"model_max_length", model_max_length}, {"add_bos_token", false},
                                   {"add_prefix_space", false}, {"clean_up_tokenization_spaces", false}};
  const TokenTable table = token_table(tokenizer);
  if (tokenizer.eos >= 0) {
    config["eos_token"] = table.text[size_t(tokenizer.eos)];
    config["bos_token"] = table.text[size_t(tokenizer.bos)];
  }
  if (!tokenizer.tokenizer_json.empty()) {
    std::filesystem::copy_file(tokenizer.tokenizer_json, output / "tokenizer.json",
                               std::filesystem::copy_options::overwrite_existing);
    config["tokenizer_class"] = "PreTrainedTokenizerFast";
  } else {
    write_gpt2_tokenizer_files(tokenizer.spec, output / "vocab.json", output / "merges.txt");
    config["tokenizer_class"] = "GPT2Tokenizer";
    if (tokenizer.eos >= 0) config["unk_token"] = table.text[size_t(tokenizer.eos)];
  }
  write_json(output / "tokenizer_config.json", config);
}

void export_hf(const ExportSource& source, const std::optional<ExportTokenizer>& tokenizer,
               const std::filesystem::path& output, const HfExportOptions& options) {
  TS_CHECK(options.dtype == DType::F32 || options.dtype == DType::F16 || options.dtype == DType::BF16,
           "export: --dtype ", dtype_name(options.dtype), " is not one the hf format takes (f32, f16, bf16)");
  TS_CHECK(options.max_shard_bytes > 0, "export: --max-shard-size must be positive");
  const TransformerConfig& c = source.config;
  NamedTensors tensors = to_hf_tensors(c, source.parameters);
  for (auto& named : tensors) named.second = named.second.to(options.dtype).contiguous();
  std::filesystem::create_directories(output);

  // Shards: tensors in order, a new shard when the next tensor would overflow the limit.
  std::vector<NamedTensors> shards(1);
  uint64_t shard_bytes = 0;
  for (auto& named : tensors) {
    const uint64_t bytes = safetensors_data_bytes({named});
    if (shard_bytes > 0 && shard_bytes + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(std::move(named));
    shard_bytes += bytes;
  }
  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  uint64_t total = 0;
  for (const NamedTensors& shard : shards) total += safetensors_data_bytes(shard);
  ByteProgress progress("export hf " + output.string(), total, options.progress);
  uint64_t done = 0;
  if (shards.size() == 1) {
    write_safetensors(output / "model.safetensors", shards[0], metadata);
    done = total;
  } else {
    nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}}, {"weight_map", nlohmann::ordered_json::object()}};
    for (size_t i = 0; i < shards.size(); ++i) {
      const std::string file = fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, shards.size());
      write_safetensors(output / file, shards[i], metadata);
      for (const auto& named : shards[i]) index["weight_map"][named.first] = file;
      done += safetensors_data_bytes(shards[i]);
      progress.update(done);
    }
    write_json(output / "model.safetensors.index.json", index);
  }
  progress.update(done);
  progress.finish();

  const HfSpecialIds ids = tokenizer ? HfSpecialIds{tokenizer->bos, tokenizer->eos} : HfSpecialIds{};
  write_json(output / "config.json", hf_config_json(c, ids, torch_dtype(options.dtype)));
  write_json(output / "generation_config.json", hf_generation_config_json(ids));
  if (tokenizer) write_hf_tokenizer_files(*tokenizer, c.max_position_embeddings, output);
}

}  // namespace tessera
