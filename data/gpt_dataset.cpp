#include "data/gpt_dataset.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/check.h"
#include "data/binary_file.h"
#include "data/gpt_dataset_indices.h"

namespace tessera {
namespace {

// FNV-1a, 64 bit: a stable name for a cache entry (the description file guards collisions).
std::string fnv1a_hex(const std::string& text) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(hash));
  return hex;
}

std::string read_text(const std::string& path) {
  std::ifstream stream(path);
  std::stringstream text;
  text << stream.rdbuf();
  return text.str();
}

void write_text_atomically(const std::string& path, const std::string& text) {
  const std::string temporary = unique_temporary_path(path);
  {
    std::ofstream stream(temporary, std::ios::trunc);
    stream << text;
    TS_CHECK(stream.good(), "cannot write ", temporary);
  }
  commit_file_atomically(temporary, path);
}

}  // namespace

GptDataset::GptDataset(std::shared_ptr<const IndexedDataset> indexed, DatasetSplit split, ElementRange range,
                       std::optional<int64_t> num_samples, const GptDatasetConfig& config)
    : indexed_(std::move(indexed)), split_(split), range_(range), config_(config) {
  TS_CHECK(indexed_ != nullptr, "GptDataset: no indexed dataset");
  const std::string where = std::string("GPT dataset ") + indexed_->prefix() + " (" + dataset_split_name(split) + ")";
  TS_CHECK(config_.sequence_length >= 1, where, ": sequence_length is ", config_.sequence_length,
           "; it must be at least 1");
  TS_CHECK(range_.begin >= 0 && range_.begin <= range_.end && range_.end <= indexed_->sequence_count(), where,
           ": sequence range [", range_.begin, ", ", range_.end, ") is outside the dataset's ",
           indexed_->sequence_count(), " sequences");
  TS_CHECK(!num_samples || *num_samples >= 1, where, ": asked for ", num_samples.value_or(0), " samples");
  int64_t tokens_per_epoch = 0;
  for (int64_t s = range_.begin; s < range_.end; ++s) tokens_per_epoch += indexed_->sequence_length(s);
  TS_CHECK(tokens_per_epoch >= config_.sequence_length + 1, where, ": the split holds ", tokens_per_epoch,
           " tokens in sequences [", range_.begin, ", ", range_.end,
           "), fewer than one sample of sequence_length + 1 = ", config_.sequence_length + 1,
           " tokens; lower the sequence length, give this split a larger share (split "
           "weights like \"969,30,1\") or add data");

  std::string folder = config_.path_to_cache.empty()
                           ? (std::filesystem::path(indexed_->prefix()) / "cache" / "GPTDataset_indices").string()
                           : config_.path_to_cache;
  const std::string description = describe(num_samples, tokens_per_epoch);
  cache_prefix_ =
      (std::filesystem::path(folder) / (fnv1a_hex(description) + "-GPTDataset-" + dataset_split_name(split))).string();
  if (!load_cached(description)) {
    std::error_code error;
    std::filesystem::create_directories(folder, error);
    TS_CHECK(!error, where, ": cannot create the index cache folder ", folder, ": ", error.message(),
             " (set path_to_cache to a writable folder)");
    build_and_save(num_samples, tokens_per_epoch, description);
    TS_CHECK(load_cached(description), where, ": the indices just written to ", cache_prefix_,
             "-*.npy cannot be read back");
    built_anew_ = true;
  }
}

std::string GptDataset::describe(std::optional<int64_t> num_samples, int64_t tokens_per_epoch) const {
  nlohmann::ordered_json description = {
      {"class", "GPTDataset"},
      {"format", 1},
      {"dataset_path", std::filesystem::absolute(indexed_->prefix()).lexically_normal().string()},
      {"split", dataset_split_name(split_)},
      {"sequence_range", {range_.begin, range_.end}},
      {"num_samples", num_samples ? nlohmann::ordered_json(*num_samples) : nlohmann::ordered_json(nullptr)},
      {"sequence_length", config_.sequence_length},
      {"random_seed", config_.random_seed},
      {"add_extra_token_to_sequence", true},
      {"dataset_sequences", indexed_->sequence_count()},
      {"dataset_tokens", indexed_->token_count()},
      {"split_tokens", tokens_per_epoch},
  };
  return description.dump(4);
}

void GptDataset::build_and_save(std::optional<int64_t> num_samples, int64_t tokens_per_epoch,
                                const std::string& description) {
  const GptEpochPlan plan = plan_gpt_epochs(tokens_per_epoch, config_.sequence_length, num_samples);
  NumpyRandomState random(config_.random_seed);
  std::vector<int32_t> document_index =
      build_gpt_document_index(range_.begin, range_.end, plan.num_epochs, plan.separate_final_epoch, random);
  std::vector<int32_t> lengths(static_cast<size_t>(range_.end));
  for (int64_t s = range_.begin; s < range_.end; ++s) lengths[static_cast<size_t>(s)] = indexed_->sequence_length(s);
  std::vector<int64_t> sample_index =
      build_gpt_sample_index(lengths, document_index, config_.sequence_length, plan.num_epochs, tokens_per_epoch);
  const int64_t samples = static_cast<int64_t>(sample_index.size() / 2) - 1;
  std::vector<int64_t> shuffle_index =
      build_gpt_shuffle_index(plan.separate_final_epoch ? plan.samples_before_final_epoch : samples, samples, random);

  write_npy<int32_t>(cache_prefix_ + "-document_index.npy", document_index,
                     {static_cast<int64_t>(document_index.size())});
  write_npy<int64_t>(cache_prefix_ + "-sample_index.npy", sample_index, {samples + 1, 2});
  write_npy<int64_t>(cache_prefix_ + "-shuffle_index.npy", shuffle_index, {samples});
  write_text_atomically(cache_prefix_ + "-description.txt", description);  // last: marks the entry complete
}

bool GptDataset::load_cached(const std::string& description) {
  const std::string description_path = cache_prefix_ + "-description.txt";
  if (!std::filesystem::exists(description_path)) return false;
  if (read_text(description_path) != description) {
    std::fprintf(stderr,
                 "tessera: warning: %s does not match this dataset's configuration (a hash collision?); "
                 "rebuilding the indices\n",
                 description_path.c_str());
    return false;
  }
  try {
    auto document_index = std::make_unique<NpyArray>(cache_prefix_ + "-document_index.npy");
    auto sample_index = std::make_unique<NpyArray>(cache_prefix_ + "-sample_index.npy");
    auto shuffle_index = std::make_unique<NpyArray>(cache_prefix_ + "-shuffle_index.npy");
    const int64_t samples = shuffle_index->size();
    TS_CHECK(sample_index->shape() == std::vector<int64_t>({samples + 1, 2}) && samples >= 1, cache_prefix_,
             ": the sample index shape does not match the ", samples, " shuffled samples");
    TS_CHECK(range_.size() > 0 && document_index->size() % range_.size() == 0, cache_prefix_,
             ": the document index is not a whole number of epochs");
    num_epochs_ = document_index->size() / range_.size();
    size_ = samples;
    document_index_ = std::move(document_index);
    sample_index_ = std::move(sample_index);
    shuffle_index_ = std::move(shuffle_index);
    return true;
  } catch (const Error& e) {
    std::fprintf(stderr, "tessera: warning: the cached GPT indices %s-* cannot be used (%s); rebuilding them\n",
                 cache_prefix_.c_str(), e.what());
    return false;
  }
}

std::vector<GptSamplePiece> GptDataset::sample_pieces(int64_t index) const {
  TS_CHECK(index >= 0 && index < size_, "GPT dataset ", indexed_->prefix(), " (", dataset_split_name(split_),
           "): sample ", index, " out of range [0, ", size_, ")");
  const int64_t shuffled = (*shuffle_index_)[index];
  const int64_t first = (*sample_index_)[2 * shuffled], first_offset = (*sample_index_)[2 * shuffled + 1];
  const int64_t last = (*sample_index_)[2 * shuffled + 2], last_offset = (*sample_index_)[2 * shuffled + 3];
  std::vector<GptSamplePiece> pieces;
  for (int64_t position = first; position <= last; ++position) {
    const int64_t sequence = (*document_index_)[position];
    const int64_t offset = position == first ? first_offset : 0;
    // The last piece ends one past the next sample's start offset: the extra label token.
    const int64_t end = position == last ? last_offset + 1 : indexed_->sequence_length(sequence);
    pieces.push_back({sequence, offset, end - offset});
  }
  return pieces;
}

std::vector<int64_t> GptDataset::sample(int64_t index) const {
  std::vector<int64_t> tokens;
  tokens.reserve(static_cast<size_t>(config_.sequence_length + 1));
  for (const GptSamplePiece& piece : sample_pieces(index)) {
    indexed_->append_tokens(piece.sequence, piece.offset, piece.length, tokens);
  }
  TS_CHECK(static_cast<int64_t>(tokens.size()) == config_.sequence_length + 1, "GPT dataset ", indexed_->prefix(),
           ": sample ", index, " has ", tokens.size(), " tokens instead of ", config_.sequence_length + 1,
           " (the cached indices do not match the data; delete ", cache_prefix_, "-*)");
  return tokens;
}

}  // namespace tessera
