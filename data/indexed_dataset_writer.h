// Writes a Megatron MMapIndexedDataset pair (PREFIX.bin + PREFIX.idx; layout in
// indexed_dataset.h) as Megatron's IndexedDatasetBuilder does, byte for byte, while keeping
// memory bounded: tokens stream to PREFIX.bin, and the per-sequence lengths and the document
// index stream to side files, from which finalize() assembles PREFIX.idx in one pass. Until
// finalize() the outputs live under temporary names (PREFIX.bin.tmp, ...); a writer destroyed
// without finalize() removes them, so an interrupted run never leaves a plausible pair behind.
//
// Megatron equivalence: add_sequence() is IndexedDatasetBuilder.add_item, end_document() is
// end_document; add_document(tokens) is what Megatron's preprocess_data.py does per JSON line
// (one sequence, or no sequence at all for a document without tokens, then end_document).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "data/binary_file.h"
#include "data/indexed_dataset.h"

namespace tessera {

class IndexedDatasetWriter {
 public:
  // dtype: the token dtype of .bin; integer dtypes only (uint16 for vocabularies < 65500).
  IndexedDatasetWriter(std::string prefix, IndexedDType dtype);
  ~IndexedDatasetWriter();
  IndexedDatasetWriter(const IndexedDatasetWriter&) = delete;
  IndexedDatasetWriter& operator=(const IndexedDatasetWriter&) = delete;

  // Appends one sequence; every token must fit the dtype (a uint16 dataset refuses id 65536).
  void add_sequence(std::span<const int32_t> tokens);
  // Closes the current document (it holds the sequences added since the last call).
  void end_document();
  void add_document(std::span<const int32_t> tokens);
  // Writes PREFIX.idx and moves both files into place.
  void finalize();

  const std::string& prefix() const { return prefix_; }
  IndexedDType dtype() const { return dtype_; }
  int64_t sequence_count() const { return sequence_count_; }
  int64_t document_count() const { return document_count_; }
  int64_t token_count() const { return token_count_; }

 private:
  template <typename T>
  void write_tokens_as(std::span<const int32_t> tokens);
  void write_index();

  std::string prefix_;
  IndexedDType dtype_;
  std::unique_ptr<BinaryFileWriter> bin_;
  std::unique_ptr<BinaryFileWriter> lengths_;
  std::unique_ptr<BinaryFileWriter> document_index_;
  int64_t sequence_count_ = 0;
  int64_t document_count_ = 0;
  int64_t token_count_ = 0;
  bool finalized_ = false;
};

}  // namespace tessera
