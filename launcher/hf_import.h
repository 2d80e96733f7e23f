// `tessera import --format hf --input DIR --output CKPT_DIR`: a Hugging Face GPT-2 or Llama
// folder (config.json; model.safetensors, or model.safetensors.index.json and its shards;
// tokenizer files when present) becomes a single-rank Tessera checkpoint CKPT_DIR/iter_0000000.h5
// (saved atomically) whose parameters are the inverse of export's conversion (hf_format.h;
// padded vocabulary rows are zero) in f32, each remembering its dtype in the files. Its saved
// recipe names a preset with overrides that rebuild exactly the folder's configuration (checked by
// rebuilding it) and the tokenizer copied to CKPT_DIR/tokenizer/; its data and train sections
// are placeholders for the fine-tuning recipe to replace. A configuration no recipe can express
// yet (a vocabulary size no preset has, another norm epsilon or rope scaling) is refused naming
// the field.
#pragma once

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "core/tensor.h"
#include "launcher/checkpoint.h"
#include "models/transformer_config.h"

namespace tessera {

struct HfModelFolder {
  TransformerConfig config;
  std::map<std::string, Tensor> tensors;  // transformers' names, the files' dtypes, host
  std::map<std::string, DType> dtypes;
};
HfModelFolder read_hf_model_folder(const std::filesystem::path& input, std::FILE* progress = stderr);

// The recipe YAML that rebuilds `config` (model section), naming `tokenizer_keys` (data keys
// "vocab_file: ..." lines, already indented) in its data section.
std::string recipe_yaml_for_config(const TransformerConfig& config, const std::string& tokenizer_keys);

struct ImportResult {
  std::string checkpoint;  // the file written
  TransformerConfig config;
};
ImportResult import_hf(const std::filesystem::path& input, const std::filesystem::path& output,
                       std::FILE* progress = stderr);

}  // namespace tessera
