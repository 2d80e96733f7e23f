#include "data/indexed_dataset_writer.h"

#include <cstdio>
#include <limits>
#include <vector>

#include "core/check.h"

namespace tessera {
namespace {

std::string temporary(const std::string& path) { return path + ".tmp"; }
std::string lengths_side_file(const std::string& prefix) { return prefix + ".idx.lengths.tmp"; }
std::string document_side_file(const std::string& prefix) { return prefix + ".idx.documents.tmp"; }

// Reads a side file back in blocks of int32 or int64 values.
template <typename T>
class SideFileReader {
 public:
  explicit SideFileReader(const std::string& path) : path_(path), file_(std::fopen(path.c_str(), "rb")) {
    TS_CHECK(file_ != nullptr, "cannot reopen ", path, " to assemble the index");
  }
  ~SideFileReader() { std::fclose(file_); }
  SideFileReader(const SideFileReader&) = delete;
  SideFileReader& operator=(const SideFileReader&) = delete;

  // Fills `block` with up to block.capacity() values; returns false at the end of the file.
  bool next(std::vector<T>& block) {
    block.resize(block.capacity());
    size_t got = std::fread(block.data(), sizeof(T), block.size(), file_);
    TS_CHECK(got == block.size() || !std::ferror(file_), "reading ", path_, " failed");
    block.resize(got);
    return got > 0;
  }

 private:
  std::string path_;
  std::FILE* file_;
};

constexpr size_t kBlockValues = 1 << 16;

}  // namespace

IndexedDatasetWriter::IndexedDatasetWriter(std::string prefix, IndexedDType dtype)
    : prefix_(std::move(prefix)), dtype_(dtype) {
  TS_CHECK(dtype == IndexedDType::UInt8 || dtype == IndexedDType::UInt16 || dtype == IndexedDType::Int16 ||
               dtype == IndexedDType::Int32 || dtype == IndexedDType::Int64,
           "indexed dataset ", prefix_, ": token dtype ", indexed_dtype_name(dtype),
           " cannot hold token ids; use uint16 or int32");
  bin_ = std::make_unique<BinaryFileWriter>(temporary(indexed_bin_path(prefix_)));
  lengths_ = std::make_unique<BinaryFileWriter>(lengths_side_file(prefix_));
  document_index_ = std::make_unique<BinaryFileWriter>(document_side_file(prefix_));
  document_index_->write_value<int64_t>(0);  // the document index starts at sequence 0
}

IndexedDatasetWriter::~IndexedDatasetWriter() {
  if (finalized_) return;
  bin_.reset();
  lengths_.reset();
  document_index_.reset();
  remove_file_quietly(temporary(indexed_bin_path(prefix_)));
  remove_file_quietly(temporary(indexed_idx_path(prefix_)));
  remove_file_quietly(lengths_side_file(prefix_));
  remove_file_quietly(document_side_file(prefix_));
}

template <typename T>
void IndexedDatasetWriter::write_tokens_as(std::span<const int32_t> tokens) {
  constexpr int64_t lowest = std::numeric_limits<T>::lowest();
  constexpr int64_t highest = std::numeric_limits<T>::max();
  T buffer[4096];
  size_t filled = 0;
  for (int32_t token : tokens) {
    TS_CHECK(token >= lowest && token <= highest, "indexed dataset ", prefix_, ": token id ", token,
             " does not fit its dtype ", indexed_dtype_name(dtype_),
             " (a vocabulary of 65500 or more entries needs int32)");
    buffer[filled++] = static_cast<T>(token);
    if (filled == std::size(buffer)) {
      bin_->write(buffer, sizeof(buffer));
      filled = 0;
    }
  }
  bin_->write(buffer, filled * sizeof(T));
}

void IndexedDatasetWriter::add_sequence(std::span<const int32_t> tokens) {
  TS_CHECK(!finalized_, "indexed dataset ", prefix_, ": add_sequence after finalize()");
  TS_CHECK(tokens.size() <= static_cast<size_t>(std::numeric_limits<int32_t>::max()), "indexed dataset ", prefix_,
           ": a sequence of ", tokens.size(), " tokens exceeds the int32 length field of the index");
  switch (dtype_) {
    case IndexedDType::UInt8:
      write_tokens_as<uint8_t>(tokens);
      break;
    case IndexedDType::UInt16:
      write_tokens_as<uint16_t>(tokens);
      break;
    case IndexedDType::Int16:
      write_tokens_as<int16_t>(tokens);
      break;
    case IndexedDType::Int32:
      write_tokens_as<int32_t>(tokens);
      break;
    default:
      write_tokens_as<int64_t>(tokens);
      break;
  }
  lengths_->write_value<int32_t>(static_cast<int32_t>(tokens.size()));
  ++sequence_count_;
  token_count_ += static_cast<int64_t>(tokens.size());
}

void IndexedDatasetWriter::end_document() {
  TS_CHECK(!finalized_, "indexed dataset ", prefix_, ": end_document after finalize()");
  document_index_->write_value<int64_t>(sequence_count_);
  ++document_count_;
}

void IndexedDatasetWriter::add_document(std::span<const int32_t> tokens) {
  if (!tokens.empty()) add_sequence(tokens);
  end_document();
}

void IndexedDatasetWriter::finalize() {
  TS_CHECK(!finalized_, "indexed dataset ", prefix_, ": finalize() called twice");
  bin_->close();
  lengths_->close();
  document_index_->close();
  write_index();
  commit_file_atomically(temporary(indexed_bin_path(prefix_)), indexed_bin_path(prefix_));
  commit_file_atomically(temporary(indexed_idx_path(prefix_)), indexed_idx_path(prefix_));
  remove_file_quietly(lengths_side_file(prefix_));
  remove_file_quietly(document_side_file(prefix_));
  finalized_ = true;
}

void IndexedDatasetWriter::write_index() {
  BinaryFileWriter idx(temporary(indexed_idx_path(prefix_)));
  idx.write(kIndexedDatasetMagic.data(), kIndexedDatasetMagic.size());
  idx.write_value<uint64_t>(kIndexedDatasetVersion);
  idx.write_value<uint8_t>(static_cast<uint8_t>(dtype_));
  idx.write_value<uint64_t>(static_cast<uint64_t>(sequence_count_));
  idx.write_value<uint64_t>(static_cast<uint64_t>(document_count_ + 1));

  std::vector<int32_t> lengths;
  lengths.reserve(kBlockValues);
  {
    SideFileReader<int32_t> reader(lengths_side_file(prefix_));
    while (reader.next(lengths)) idx.write_values<int32_t>(lengths);
  }
  // Pointers are the running byte offsets of the sequences (Megatron's _sequence_pointers).
  std::vector<int64_t> pointers;
  pointers.reserve(kBlockValues);
  {
    SideFileReader<int32_t> reader(lengths_side_file(prefix_));
    int64_t offset = 0;
    const int64_t item = indexed_dtype_size(dtype_);
    while (reader.next(lengths)) {
      pointers.clear();
      for (int32_t length : lengths) {
        pointers.push_back(offset);
        offset += length * item;
      }
      idx.write_values<int64_t>(pointers);
    }
  }
  {
    SideFileReader<int64_t> reader(document_side_file(prefix_));
    std::vector<int64_t> entries;
    entries.reserve(kBlockValues);
    while (reader.next(entries)) idx.write_values<int64_t>(entries);
  }
  const int64_t expected = kIndexedDatasetHeaderBytes + 12 * sequence_count_ + 8 * (document_count_ + 1);
  TS_CHECK(idx.bytes_written() == expected, "indexed dataset ", prefix_, ": assembled ", idx.bytes_written(),
           " index bytes, expected ", expected, " (a side file was changed while writing)");
  idx.close();
}

}  // namespace tessera
