// DataLoader: hands one data-parallel rank its micro-batches of a TokenSampleDataset, with
// a background thread that prefetches the next few while the rank computes.
//
// Order (Megatron's MegatronPretrainingSampler): the dataset is read in order from the
// consumed-sample count; each group of micro_batch_size x data_parallel_size consecutive
// samples is one global micro-batch, and rank r takes rows [r x micro_batch_size,
// (r + 1) x micro_batch_size) of it. A global batch is gradient-accumulation-steps such
// groups. Resuming from a checkpoint's consumed-sample count therefore yields exactly the
// batches an uninterrupted run would have seen next. The loader stops (next() returns
// std::nullopt) when the dataset cannot fill another whole global micro-batch.
//
// Rows hold sequence_length + 1 tokens of a sample: tokens are its first L, labels its last L
// (row-major [micro_batch_size, L] int64, ready for Tensor::from_vector).
//
// The same loader serves SFT rows (data/sft_dataset.h), in the same order and with the same
// resume rule: each row brings its own labels (-100 where ignored), its loss mask (aligned with
// labels) and its document lengths (packed conversations; positions and attention restart at
// each). Pretraining batches leave loss_mask and document_lengths empty.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "data/token_sample_dataset.h"

namespace tessera {

class SftDataset;  // data/sft_dataset.h

struct DataLoaderOptions {
  int64_t micro_batch_size = 1;
  int64_t data_parallel_rank = 0;
  int64_t data_parallel_size = 1;
  int64_t consumed_samples = 0;        // global samples consumed before this loader (resume point)
  int64_t prefetch_micro_batches = 4;  // how far the background thread runs ahead
};

struct MicroBatch {
  int64_t rows = 0;
  int64_t sequence_length = 0;
  std::vector<int64_t> tokens;   // [rows, sequence_length]
  std::vector<int64_t> labels;   // [rows, sequence_length]: tokens shifted by one
  std::vector<float> loss_mask;  // [rows, sequence_length] aligned with labels; empty: all ones
  // Per row, the lengths of its documents in order, summing to sequence_length; empty: each
  // row is one document (pretraining, where attention crosses document boundaries).
  std::vector<std::vector<int64_t>> document_lengths;
  std::vector<int64_t> sample_indices;  // dataset index of each row
  int64_t consumed_samples = 0;         // global count once every rank has taken this micro-batch
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const TokenSampleDataset> dataset, const DataLoaderOptions& options);
  DataLoader(std::shared_ptr<const SftDataset> dataset, const DataLoaderOptions& options);
  // A null dataset (of either kind) is refused; this overload keeps `DataLoader(nullptr, ...)` unambiguous.
  DataLoader(std::nullptr_t, const DataLoaderOptions& options)
      : DataLoader(std::shared_ptr<const TokenSampleDataset>(), options) {}
  ~DataLoader();  // stops and joins the prefetch thread
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // The next micro-batch of this rank, or std::nullopt at the end of the dataset. An error
  // raised while reading a sample on the prefetch thread is rethrown here.
  std::optional<MicroBatch> next();
  // Global samples consumed after the micro-batches next() has returned (for checkpoints).
  int64_t consumed_samples() const { return consumed_samples_; }
  // Micro-batches left for this rank from the current position.
  int64_t remaining_micro_batches() const;

 private:
  void start();  // checks the options, starts the prefetch thread
  int64_t dataset_size() const;
  MicroBatch read_micro_batch(int64_t global_start) const;
  void append_row(int64_t index, MicroBatch& batch) const;
  void prefetch_loop();

  std::shared_ptr<const TokenSampleDataset> dataset_;  // one of these two is set
  std::shared_ptr<const SftDataset> sft_dataset_;
  DataLoaderOptions options_;
  int64_t consumed_samples_;

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<MicroBatch> ready_;
  bool producer_done_ = false;
  bool stopping_ = false;
  std::exception_ptr failure_;
  std::thread producer_;
};

}  // namespace tessera
