#include "launcher/sft_data.h"

#include <fmt/format.h>

#include <filesystem>

#include "data/chat_template.h"
#include "data/tokenizer.h"

namespace tessera {
namespace {

Tokenizer recipe_tokenizer(const SftDataConfig& sft) {
  if (!sft.tokenizer_model.empty()) return Tokenizer::load(sft.tokenizer_model);
  return Tokenizer::load(std::filesystem::path(sft.vocab_file), std::filesystem::path(sft.merge_file));
}

}  // namespace

SftDatasets load_sft_datasets(const TrainConfig& c, const std::function<void(const std::string&)>& log) {
  const Tokenizer tokenizer = recipe_tokenizer(c.sft);
  const ChatTemplate chat = ChatTemplate::for_family(c.sft.chat_template, tokenizer);
  SftDatasetOptions options;
  options.sequence_length = c.seq_length;
  options.packing = c.sft.packing == "sequential" ? SftPacking::kSequential : SftPacking::kFirstFit;
  options.overflow = c.sft.overflow == "truncate" ? SftOverflow::kTruncate : SftOverflow::kSkip;
  options.seed = c.seed;
  SftDatasets out;
  std::shared_ptr<SftDataset> train = SftDataset::load(c.sft.train_paths, chat, tokenizer, options);
  TS_CHECK(train->size() > 0, "data.sft_train_path: no conversation fits data.seq_length ", c.seq_length,
           " (", train->report().summary(c.seq_length), "); raise seq_length or set data.sft_overflow: truncate");
  // Enough passes over the conversations for the run (each later pass in another order).
  const int64_t needed = c.train_iters * c.global_batch_size;
  if (train->size() < needed) {
    options.epochs = (needed + train->size() - 1) / train->size();
    train = SftDataset::load(c.sft.train_paths, chat, tokenizer, options);
  }
  log(fmt::format("sft data: {} ({} pass(es))", train->report().summary(c.seq_length), options.epochs));
  out.train = train;
  if (!c.sft.valid_paths.empty()) {
    options.epochs = 1;
    options.shuffle = false;
    out.valid = SftDataset::load(c.sft.valid_paths, chat, tokenizer, options);
    log(fmt::format("sft validation data: {}", out.valid->report().summary(c.seq_length)));
  }
  return out;
}

double counted_tokens(const MicroBatch& mb) {
  if (mb.loss_mask.empty()) return double(mb.rows * mb.sequence_length);
  double counted = 0.0;
  for (size_t i = 0; i < mb.loss_mask.size(); ++i)
    if (mb.labels[i] != kSftIgnoreIndex) counted += mb.loss_mask[i];
  return counted;
}

}  // namespace tessera
