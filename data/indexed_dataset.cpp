#include "data/indexed_dataset.h"

#include <sys/stat.h>

#include <bit>
#include <cstring>

#include "core/check.h"

namespace tessera {
namespace {

static_assert(std::endian::native == std::endian::little,
              "Megatron's .bin/.idx files are little-endian; reading them on a big-endian host needs byte swaps");

template <typename T>
T load_unaligned(const uint8_t* bytes) {
  T value;
  std::memcpy(&value, bytes, sizeof(T));
  return value;
}

// The path of an existing file of the pair, or an error saying which one is missing and why.
std::string require_file(const std::string& path, const std::string& prefix) {
  struct stat info {};
  TS_CHECK(::stat(path.c_str(), &info) == 0, "indexed dataset '", prefix, "': ", path,
           " not found (a dataset is the pair PREFIX.bin + PREFIX.idx; write one with "
           "`tessera preprocess --input FILE --output PREFIX ...`)");
  return path;
}

template <typename T>
void append_widened(const uint8_t* bytes, int64_t count, std::vector<int64_t>& out) {
  for (int64_t i = 0; i < count; ++i) out.push_back(static_cast<int64_t>(load_unaligned<T>(bytes + i * sizeof(T))));
}

}  // namespace

bool is_indexed_dtype_code(uint8_t code) { return code >= 1 && code <= 8; }

// Indexed by Megatron's dtype code (0 is unused).
constexpr int64_t kDtypeSizes[] = {0, 1, 1, 2, 4, 8, 8, 4, 2};
constexpr const char* kDtypeNames[] = {"", "uint8", "int8", "int16", "int32", "int64", "float64", "float32", "uint16"};

int64_t indexed_dtype_size(IndexedDType dtype) {
  const auto code = static_cast<uint8_t>(dtype);
  TS_CHECK(is_indexed_dtype_code(code), "unknown indexed dtype code ", static_cast<int>(code));
  return kDtypeSizes[code];
}

const char* indexed_dtype_name(IndexedDType dtype) {
  const auto code = static_cast<uint8_t>(dtype);
  return is_indexed_dtype_code(code) ? kDtypeNames[code] : "unknown";
}

IndexedDType indexed_dtype_for_vocab_size(int64_t vocab_size) {
  return vocab_size < 65500 ? IndexedDType::UInt16 : IndexedDType::Int32;
}

std::string indexed_idx_path(const std::string& prefix) { return prefix + ".idx"; }
std::string indexed_bin_path(const std::string& prefix) { return prefix + ".bin"; }

IndexedDataset::IndexedDataset(std::string prefix)
    : prefix_(std::move(prefix)),
      idx_(require_file(indexed_idx_path(prefix_), prefix_)),
      bin_(require_file(indexed_bin_path(prefix_), prefix_)) {
  const std::string& path = idx_.path();
  const int64_t idx_bytes = static_cast<int64_t>(idx_.size());
  TS_CHECK(idx_bytes >= kIndexedDatasetHeaderBytes, path, " is ", idx_bytes, " bytes, shorter than the ",
           kIndexedDatasetHeaderBytes, "-byte header of a Megatron index: the file is empty or truncated; ",
           "write the dataset again");
  const uint8_t* header = idx_.data();
  TS_CHECK(std::memcmp(header, kIndexedDatasetMagic.data(), kIndexedDatasetMagic.size()) == 0, path,
           " does not start with the magic \"MMIDIDX\\0\\0\": it is not a Megatron MMapIndexedDataset index "
           "(the legacy \"TNTIDX\" format and other files are not supported)");
  uint64_t version = load_unaligned<uint64_t>(header + 9);
  TS_CHECK(version == kIndexedDatasetVersion, path, " has index version ", version, "; only version ",
           kIndexedDatasetVersion, " (Megatron-LM's) is supported");
  uint8_t code = header[17];
  TS_CHECK(is_indexed_dtype_code(code), path, " has dtype code ", static_cast<int>(code),
           "; Megatron's codes are 1..8 (uint8, int8, int16, int32, int64, float64, float32, uint16)");
  dtype_ = static_cast<IndexedDType>(code);
  uint64_t sequences = load_unaligned<uint64_t>(header + 18);
  uint64_t entries = load_unaligned<uint64_t>(header + 26);
  // 12 bytes per sequence (length + pointer) and 8 per document-index entry fill the rest;
  // the bounds come first so that a corrupt count cannot overflow the product.
  const uint64_t body = static_cast<uint64_t>(idx_bytes - kIndexedDatasetHeaderBytes);
  TS_CHECK(sequences <= body / 12 && entries <= body / 8 && sequences * 12 + entries * 8 == body, path, " is ",
           idx_bytes, " bytes but its header announces ", sequences, " sequences and ", entries,
           " document-index entries, which take ", kIndexedDatasetHeaderBytes, " + 12 x ", sequences, " + 8 x ",
           entries,
           " bytes: the index is truncated or corrupt (multimodal indices with sequence modes are not "
           "supported); write the dataset again");
  sequence_count_ = static_cast<int64_t>(sequences);
  document_index_entries_ = static_cast<int64_t>(entries);
  lengths_ = header + kIndexedDatasetHeaderBytes;
  pointers_ = lengths_ + 4 * sequence_count_;
  document_index_ = pointers_ + 8 * sequence_count_;
  validate_document_index();
  validate_sequences();
}

void IndexedDataset::validate_document_index() const {
  const std::string& path = idx_.path();
  TS_CHECK(document_index_entries_ >= 1, path, " has an empty document index; it needs at least the entry 0");
  TS_CHECK(document_index(0) == 0, path, ": the document index starts at ", document_index(0), " instead of 0");
  for (int64_t entry = 1; entry < document_index_entries_; ++entry) {
    TS_CHECK(document_index(entry) >= document_index(entry - 1), path, ": document index entry ", entry, " (",
             document_index(entry), ") is smaller than the one before (", document_index(entry - 1), ")");
  }
  TS_CHECK(document_index(document_index_entries_ - 1) == sequence_count_, path,
           ": the document index ends at sequence ", document_index(document_index_entries_ - 1), " but there are ",
           sequence_count_, " sequences");
}

void IndexedDataset::validate_sequences() {
  const int64_t item = indexed_dtype_size(dtype_);
  const int64_t bin_bytes = static_cast<int64_t>(bin_.size());
  int64_t end = 0;
  for (int64_t s = 0; s < sequence_count_; ++s) {
    int64_t length = sequence_length(s);
    int64_t pointer = sequence_pointer(s);
    TS_CHECK(length >= 0 && pointer >= 0 && pointer % item == 0, idx_.path(), ": sequence ", s, " has length ", length,
             " and byte offset ", pointer, ", which is not a valid ", indexed_dtype_name(dtype_), " sequence");
    TS_CHECK(pointer + length * item <= bin_bytes, idx_.path(), ": sequence ", s, " ends at byte ",
             pointer + length * item, " but ", bin_.path(), " is only ", bin_bytes,
             " bytes: the .bin is truncated or belongs to another index");
    end = std::max(end, pointer + length * item);
    token_count_ += length;
  }
  TS_CHECK(end == bin_bytes, bin_.path(), " is ", bin_bytes, " bytes but ", idx_.path(), " describes ", end,
           " bytes of ", indexed_dtype_name(dtype_),
           " tokens: the pair comes from different runs or was cut short; write the dataset again");
}

int32_t IndexedDataset::sequence_length(int64_t sequence) const {
  TS_CHECK(sequence >= 0 && sequence < sequence_count_, prefix_, ": sequence ", sequence, " out of range [0, ",
           sequence_count_, ")");
  return load_unaligned<int32_t>(lengths_ + 4 * sequence);
}

int64_t IndexedDataset::sequence_pointer(int64_t sequence) const {
  TS_CHECK(sequence >= 0 && sequence < sequence_count_, prefix_, ": sequence ", sequence, " out of range [0, ",
           sequence_count_, ")");
  return load_unaligned<int64_t>(pointers_ + 8 * sequence);
}

int64_t IndexedDataset::document_index(int64_t entry) const {
  TS_CHECK(entry >= 0 && entry < document_index_entries_, prefix_, ": document index entry ", entry,
           " out of range [0, ", document_index_entries_, ")");
  return load_unaligned<int64_t>(document_index_ + 8 * entry);
}

void IndexedDataset::append_tokens(int64_t sequence, int64_t offset, int64_t length, std::vector<int64_t>& out) const {
  const int64_t sequence_tokens = sequence_length(sequence);
  TS_CHECK(offset >= 0 && length >= 0 && offset + length <= sequence_tokens, prefix_, ": tokens [", offset, ", ",
           offset + length, ") of sequence ", sequence, " are outside its ", sequence_tokens, " tokens");
  TS_CHECK(dtype_ != IndexedDType::Float32 && dtype_ != IndexedDType::Float64, prefix_, " holds ",
           indexed_dtype_name(dtype_), " values, not token ids; GPT datasets need an integer dtype (uint16 or int32)");
  const uint8_t* bytes = bin_.data() + sequence_pointer(sequence) + offset * indexed_dtype_size(dtype_);
  out.reserve(out.size() + static_cast<size_t>(length));
  switch (dtype_) {
    case IndexedDType::UInt8:
      return append_widened<uint8_t>(bytes, length, out);
    case IndexedDType::Int8:
      return append_widened<int8_t>(bytes, length, out);
    case IndexedDType::Int16:
      return append_widened<int16_t>(bytes, length, out);
    case IndexedDType::UInt16:
      return append_widened<uint16_t>(bytes, length, out);
    case IndexedDType::Int32:
      return append_widened<int32_t>(bytes, length, out);
    case IndexedDType::Int64:
      return append_widened<int64_t>(bytes, length, out);
    case IndexedDType::Float32:
    case IndexedDType::Float64:
      return;  // refused above
  }
}

std::vector<int64_t> IndexedDataset::sequence(int64_t sequence) const {
  std::vector<int64_t> tokens;
  append_tokens(sequence, 0, sequence_length(sequence), tokens);
  return tokens;
}

}  // namespace tessera
