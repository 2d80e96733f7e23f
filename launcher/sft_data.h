// The datasets of a supervised fine-tuning run (data.sft_*, launcher/train_config.h): the
// recipe's tokenizer, the chat template, and the packed train/validation rows, with enough
// passes over the training conversations for train_iters x global_batch_size rows.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "data/loader.h"
#include "data/sft_dataset.h"
#include "launcher/train_config.h"

namespace tessera {

struct SftDatasets {
  std::shared_ptr<const SftDataset> train, valid;  // valid: null without data.sft_valid_path
};

SftDatasets load_sft_datasets(const TrainConfig& c, const std::function<void(const std::string&)>& log);

// Tokens whose loss counts in a micro-batch: its loss mask's sum over labels that are not
// ignored, or every position when it has no mask (pretraining).
double counted_tokens(const MicroBatch& mb);

}  // namespace tessera
