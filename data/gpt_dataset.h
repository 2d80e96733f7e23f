// GptDataset: Megatron-LM's GPTDataset over one split of an indexed dataset. Samples are
// sequence_length + 1 consecutive tokens of the documents in shuffled order, crossing
// document boundaries (gpt_dataset_indices.h has the three indices and how they are built).
// The indices are built once and cached beside the data as .npy files named by a hash of
// everything that determines them (dataset, split range, sample count, sequence length,
// seed, and the dataset's sequence and token counts), next to a description.txt holding the
// hashed text; a later run with the same configuration memory-maps them instead of building.
// Files are written under unique temporary names and moved into place, so ranks that build
// at the same time cannot see or corrupt each other's files (to save the duplicated work,
// build on one rank first, then the others after a barrier, as Megatron does). A cache whose
// description differs or that fails to load is rebuilt, with a warning.
//
// Default cache folder, as Megatron's: PREFIX/cache/GPTDataset_indices (a folder named like
// the dataset prefix, beside PREFIX.bin and PREFIX.idx).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/gpt_dataset_split.h"
#include "data/indexed_dataset.h"
#include "data/npy_array.h"
#include "data/token_sample_dataset.h"

namespace tessera {

struct GptDatasetConfig {
  int64_t sequence_length = 0;  // tokens per sample input (Megatron's seq_length)
  uint32_t random_seed = 1234;  // Megatron's default --seed
  std::string path_to_cache;    // empty: PREFIX/cache/GPTDataset_indices
};

// Where the sample's tokens come from: `length` tokens of `sequence` starting at `offset`.
struct GptSamplePiece {
  int64_t sequence = 0;
  int64_t offset = 0;
  int64_t length = 0;
};

class GptDataset : public TokenSampleDataset {
 public:
  // Samples from the sequences in `range` of `indexed`. num_samples: the number of samples
  // wanted (the dataset repeats epochs to reach it); std::nullopt: exactly one epoch.
  GptDataset(std::shared_ptr<const IndexedDataset> indexed, DatasetSplit split, ElementRange range,
             std::optional<int64_t> num_samples, const GptDatasetConfig& config);

  int64_t size() const override { return size_; }
  int64_t sequence_length() const override { return config_.sequence_length; }
  std::vector<int64_t> sample(int64_t index) const override;
  std::vector<GptSamplePiece> sample_pieces(int64_t index) const;

  DatasetSplit split() const { return split_; }
  int64_t num_epochs() const { return num_epochs_; }
  bool built_anew() const { return built_anew_; }                    // false when the indices came from the cache
  const std::string& cache_prefix() const { return cache_prefix_; }  // <folder>/<hash>-GPTDataset-<split>

 private:
  std::string describe(std::optional<int64_t> num_samples, int64_t tokens_per_epoch) const;
  void build_and_save(std::optional<int64_t> num_samples, int64_t tokens_per_epoch, const std::string& description);
  bool load_cached(const std::string& description);

  std::shared_ptr<const IndexedDataset> indexed_;
  DatasetSplit split_;
  ElementRange range_;
  GptDatasetConfig config_;
  std::string cache_prefix_;
  std::unique_ptr<NpyArray> document_index_;
  std::unique_ptr<NpyArray> sample_index_;
  std::unique_ptr<NpyArray> shuffle_index_;
  int64_t size_ = 0;
  int64_t num_epochs_ = 0;
  bool built_anew_ = false;
};

}  // namespace tessera
