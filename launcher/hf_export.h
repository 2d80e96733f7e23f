// `tessera export --format hf`: a folder transformers loads with from_pretrained:
//   config.json, generation_config.json (hf_format.h);
//   model.safetensors, or above `max_shard_bytes` model-0000I-of-0000N.safetensors plus
//     model.safetensors.index.json {"metadata": {"total_size"}, "weight_map": {name: file}};
//   the tokenizer: tokenizer.json copied as is, or GPT-2's vocab.json + merges.txt, with a
//     tokenizer_config.json naming the tokenizer class and the end-of-text token.
#pragma once

#include <cstdio>
#include <optional>
#include <string>

#include "launcher/export_source.h"
#include "launcher/export_tokenizer.h"

namespace tessera {

struct HfExportOptions {
  DType dtype = DType::F32;                       // f32, f16 or bf16
  uint64_t max_shard_bytes = 5'000'000'000;       // transformers' default shard size
  std::FILE* progress = stderr;                   // null: silent
};

void export_hf(const ExportSource& source, const std::optional<ExportTokenizer>& tokenizer,
               const std::filesystem::path& output, const HfExportOptions& options);

// Writes tokenizer files into `output` (shared with import, which copies a model's tokenizer).
void write_hf_tokenizer_files(const ExportTokenizer& tokenizer, int64_t model_max_length,
                              const std::filesystem::path& output);

}  // namespace tessera
