// Megatron's MMapIndexedDataset (.bin/.idx pair), read byte for byte as Megatron-LM writes it
// (megatron/core/datasets/indexed_dataset.py), so data preprocessed for Megatron loads here
// and ours loads there.
//
// PREFIX.idx, little-endian, no padding:
//   9 bytes   magic "MMIDIDX\0\0"
//   u64       version, always 1
//   u8        dtype code of the tokens in .bin (IndexedDType)
//   u64       S, the number of sequences
//   u64       D, the number of entries of the document index (documents + 1)
//   S x i32   sequence lengths, in tokens
//   S x i64   sequence pointers: byte offset of each sequence in .bin
//   D x i64   document index: the first sequence of each document, then S; starts at 0
// PREFIX.bin: the tokens of all sequences back to back, in the dtype of the header.
//
// Megatron's preprocessing writes one sequence per document (no sentence splitting), and a
// GPT dataset splits and samples by sequence. The arrays start at byte 34, so they are not
// aligned: every access goes through memcpy. Both files are memory-mapped, never read whole.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/mapped_file.h"

namespace tessera {

// Megatron's DType codes (indexed_dataset.py, class DType).
enum class IndexedDType : uint8_t {
  UInt8 = 1,
  Int8 = 2,
  Int16 = 3,
  Int32 = 4,
  Int64 = 5,
  Float64 = 6,
  Float32 = 7,
  UInt16 = 8,
};

inline constexpr std::string_view kIndexedDatasetMagic{"MMIDIDX\0\0", 9};
inline constexpr uint64_t kIndexedDatasetVersion = 1;
inline constexpr int64_t kIndexedDatasetHeaderBytes = 34;  // magic + version + dtype + S + D

bool is_indexed_dtype_code(uint8_t code);
int64_t indexed_dtype_size(IndexedDType dtype);
const char* indexed_dtype_name(IndexedDType dtype);  // numpy's name: "uint16", "int32", ...
// Megatron's DType.optimal_dtype: uint16 when the vocabulary has fewer than 65500 entries.
IndexedDType indexed_dtype_for_vocab_size(int64_t vocab_size);

std::string indexed_idx_path(const std::string& prefix);  // PREFIX.idx
std::string indexed_bin_path(const std::string& prefix);  // PREFIX.bin

class IndexedDataset {
 public:
  // Maps PREFIX.idx and PREFIX.bin and validates the header, the array sizes against the
  // .idx size, the document index and every sequence's extent against the .bin size.
  explicit IndexedDataset(std::string prefix);

  const std::string& prefix() const { return prefix_; }
  IndexedDType dtype() const { return dtype_; }
  int64_t sequence_count() const { return sequence_count_; }
  int64_t document_count() const { return document_index_entries_ - 1; }
  int64_t token_count() const { return token_count_; }

  int32_t sequence_length(int64_t sequence) const;
  int64_t sequence_pointer(int64_t sequence) const;
  // Entry `entry` of the document index, entry in [0, document_count()]: the first sequence
  // of document `entry` (the last entry is sequence_count()).
  int64_t document_index(int64_t entry) const;

  // Appends tokens [offset, offset + length) of `sequence` to `out`, widened to int64.
  // Integer dtypes only (token ids); a float dataset is refused with a message.
  void append_tokens(int64_t sequence, int64_t offset, int64_t length, std::vector<int64_t>& out) const;
  std::vector<int64_t> sequence(int64_t sequence) const;

 private:
  void validate_document_index() const;
  void validate_sequences();

  std::string prefix_;
  MappedFile idx_;
  MappedFile bin_;
  IndexedDType dtype_ = IndexedDType::UInt16;
  int64_t sequence_count_ = 0;
  int64_t document_index_entries_ = 0;
  int64_t token_count_ = 0;
  const uint8_t* lengths_ = nullptr;
  const uint8_t* pointers_ = nullptr;
  const uint8_t* document_index_ = nullptr;
};

}  // namespace tessera
