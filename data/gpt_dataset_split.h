// Train/valid/test splits of a dataset as Megatron-LM makes them from a string like
// "969,30,1" (parse_and_normalize_split + convert_split_vector_to_split_matrix + the split
// indices of BlendedMegatronDatasetBuilder): up to three non-negative weights, normalized,
// turned into cumulative bounds [lo, hi), and into element ranges
// [round(lo * n), round(hi * n)) with Python's round (half to even). A split of weight 0 is
// absent. For GPT datasets the elements are the sequences of the indexed dataset.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace tessera {

enum class DatasetSplit { Train = 0, Valid = 1, Test = 2 };
inline constexpr int kDatasetSplitCount = 3;

const char* dataset_split_name(DatasetSplit split);  // "train", "valid", "test"

struct ElementRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t size() const { return end - begin; }
};

// "969,30,1" -> {0.969, 0.03, 0.001}; "1" -> {1, 0, 0}; separators ',' or '/'.
std::array<double, kDatasetSplitCount> parse_split_weights(const std::string& split);

std::array<std::optional<ElementRange>, kDatasetSplitCount> split_element_ranges(
    const std::array<double, kDatasetSplitCount>& weights, int64_t element_count);

}  // namespace tessera
