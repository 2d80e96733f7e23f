#include "data/loader.h"

#include "core/check.h"
#include "data/sft_dataset.h"

namespace tessera {

DataLoader::DataLoader(std::shared_ptr<const TokenSampleDataset> dataset, const DataLoaderOptions& options)
    : dataset_(std::move(dataset)), options_(options), consumed_samples_(options.consumed_samples) {
  TS_CHECK(dataset_ != nullptr, "data loader: no dataset");
  start();
}

DataLoader::DataLoader(std::shared_ptr<const SftDataset> dataset, const DataLoaderOptions& options)
    : sft_dataset_(std::move(dataset)), options_(options), consumed_samples_(options.consumed_samples) {
  TS_CHECK(sft_dataset_ != nullptr, "data loader: no dataset");
  start();
}

void DataLoader::start() {
  TS_CHECK(options_.micro_batch_size >= 1, "data loader: micro_batch_size is ", options_.micro_batch_size,
           "; it must be at least 1");
  TS_CHECK(options_.data_parallel_size >= 1 && options_.data_parallel_rank >= 0 &&
               options_.data_parallel_rank < options_.data_parallel_size,
           "data loader: data-parallel rank ", options_.data_parallel_rank, " is outside [0, ",
           options_.data_parallel_size, ")");
  TS_CHECK(options_.consumed_samples >= 0 && options_.consumed_samples <= dataset_size(),
           "data loader: consumed_samples ", options_.consumed_samples, " is outside the dataset's ", dataset_size(),
           " samples (was the checkpoint written with other data or more training iterations?)");
  TS_CHECK(options_.prefetch_micro_batches >= 1, "data loader: prefetch_micro_batches must be at least 1");
  producer_ = std::thread([this] { prefetch_loop(); });
}

int64_t DataLoader::dataset_size() const { return dataset_ ? dataset_->size() : sft_dataset_->size(); }

DataLoader::~DataLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  producer_.join();
}

int64_t DataLoader::remaining_micro_batches() const {
  return (dataset_size() - consumed_samples_) / (options_.micro_batch_size * options_.data_parallel_size);
}

MicroBatch DataLoader::read_micro_batch(int64_t global_start) const {
  MicroBatch batch;
  batch.rows = options_.micro_batch_size;
  batch.sequence_length = dataset_ ? dataset_->sequence_length() : sft_dataset_->sequence_length();
  batch.consumed_samples = global_start + options_.micro_batch_size * options_.data_parallel_size;
  const int64_t first = global_start + options_.data_parallel_rank * options_.micro_batch_size;
  const size_t length = static_cast<size_t>(batch.sequence_length);
  batch.tokens.reserve(static_cast<size_t>(batch.rows) * length);
  batch.labels.reserve(static_cast<size_t>(batch.rows) * length);
  for (int64_t row = 0; row < batch.rows; ++row) {
    append_row(first + row, batch);
    batch.sample_indices.push_back(first + row);
  }
  return batch;
}

void DataLoader::append_row(int64_t index, MicroBatch& batch) const {
  const size_t length = static_cast<size_t>(batch.sequence_length);
  if (dataset_) {
    std::vector<int64_t> sample = dataset_->sample(index);
    TS_CHECK(sample.size() == length + 1, "data loader: sample ", index, " has ", sample.size(),
             " tokens; expected sequence_length + 1 = ", length + 1);
    batch.tokens.insert(batch.tokens.end(), sample.begin(), sample.end() - 1);
    batch.labels.insert(batch.labels.end(), sample.begin() + 1, sample.end());
    return;
  }
  SftSample sample = sft_dataset_->sample(index);
  batch.tokens.insert(batch.tokens.end(), sample.tokens.begin(), sample.tokens.end());
  batch.labels.insert(batch.labels.end(), sample.labels.begin(), sample.labels.end());
  batch.loss_mask.insert(batch.loss_mask.end(), sample.loss_mask.begin(), sample.loss_mask.end());
  batch.document_lengths.push_back(std::move(sample.document_lengths));
}

void DataLoader::prefetch_loop() {
  const int64_t group = options_.micro_batch_size * options_.data_parallel_size;
  try {
    for (int64_t start = options_.consumed_samples; start + group <= dataset_size(); start += group) {
      MicroBatch batch = read_micro_batch(start);
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock,
                    [&] { return stopping_ || static_cast<int64_t>(ready_.size()) < options_.prefetch_micro_batches; });
      if (stopping_) return;
      ready_.push_back(std::move(batch));
      changed_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    failure_ = std::current_exception();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  producer_done_ = true;
  changed_.notify_all();
}

std::optional<MicroBatch> DataLoader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return !ready_.empty() || producer_done_; });
  if (ready_.empty()) {
    if (failure_) std::rethrow_exception(failure_);
    return std::nullopt;
  }
  MicroBatch batch = std::move(ready_.front());
  ready_.pop_front();
  changed_.notify_all();
  consumed_samples_ = batch.consumed_samples;
  return batch;
}

}  // namespace tessera
