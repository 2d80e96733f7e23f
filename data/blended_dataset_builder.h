// Builds the train/valid/test datasets of a GPT run from Megatron-style options, as
// Megatron-LM's BlendedMegatronDatasetBuilder does: a data path that is one prefix or a
// weighted blend ("0.3 PREFIX_A 0.7 PREFIX_B", Megatron's --data-path), a split string
// ("969,30,1") applied to every prefix, and the number of samples each split must provide
// (train: train_iters x global_batch_size; valid/test: eval_iters x global_batch_size x
// evaluations). With a blend, each prefix's split is built with ceil(samples x weight x 1.005)
// samples (Megatron's 0.5% margin) and a BlendedDataset mixes them to exactly the requested
// count.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/gpt_dataset.h"
#include "data/gpt_dataset_split.h"
#include "data/token_sample_dataset.h"

namespace tessera {

struct DataBlend {
  std::vector<std::string> prefixes;
  std::vector<double> weights;  // empty for a single unweighted prefix
};

// {"PREFIX"} or {"0.3", "A", "0.7", "B"}: weight/prefix pairs, weights need not sum to 1.
DataBlend parse_data_blend(const std::vector<std::string>& words);

// Per split: the number of samples wanted, std::nullopt for one epoch of an unblended prefix,
// or 0 for no dataset. A split whose weight in `split` is 0 gets no dataset (nullptr).
using SplitSampleCounts = std::array<std::optional<int64_t>, kDatasetSplitCount>;
using SplitDatasets = std::array<std::shared_ptr<const TokenSampleDataset>, kDatasetSplitCount>;

SplitDatasets build_gpt_split_datasets(const DataBlend& blend, const std::string& split,
                                       const SplitSampleCounts& samples, const GptDatasetConfig& config);

}  // namespace tessera
