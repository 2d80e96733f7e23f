#include "data/gpt_dataset_split.h"

#include <cmath>
#include <cstdlib>
#include <vector>

#include "core/check.h"

namespace tessera {

const char* dataset_split_name(DatasetSplit split) {
  switch (split) {
    case DatasetSplit::Train:
      return "train";
    case DatasetSplit::Valid:
      return "valid";
    case DatasetSplit::Test:
      return "test";
  }
  return "unknown";
}

std::array<double, kDatasetSplitCount> parse_split_weights(const std::string& split) {
  const std::string usage = "; expected up to three non-negative weights for train, valid and test, like \"969,30,1\"";
  std::vector<double> weights;
  size_t start = 0;
  while (start <= split.size()) {
    size_t stop = split.find_first_of(",/", start);
    if (stop == std::string::npos) stop = split.size();
    std::string field = split.substr(start, stop - start);
    size_t first = field.find_first_not_of(' '), last = field.find_last_not_of(' ');
    TS_CHECK(first != std::string::npos, "split \"", split, "\": empty field", usage);
    field = field.substr(first, last - first + 1);
    char* parsed_end = nullptr;
    double weight = std::strtod(field.c_str(), &parsed_end);
    TS_CHECK(parsed_end == field.c_str() + field.size() && std::isfinite(weight) && weight >= 0, "split \"", split,
             "\": '", field, "' is not a non-negative number", usage);
    weights.push_back(weight);
    start = stop + 1;
  }
  TS_CHECK(weights.size() <= kDatasetSplitCount, "split \"", split, "\" has ", weights.size(), " weights", usage);
  weights.resize(kDatasetSplitCount, 0.0);
  double total = weights[0] + weights[1] + weights[2];
  TS_CHECK(total > 0, "split \"", split, "\": the weights sum to 0", usage);
  return {weights[0] / total, weights[1] / total, weights[2] / total};
}

std::array<std::optional<ElementRange>, kDatasetSplitCount> split_element_ranges(
    const std::array<double, kDatasetSplitCount>& weights, int64_t element_count) {
  std::array<std::optional<ElementRange>, kDatasetSplitCount> ranges;
  double lo = 0.0;
  for (int s = 0; s < kDatasetSplitCount; ++s) {
    double hi = lo + weights[s];
    if (hi != lo) {
      // std::nearbyint rounds half to even in the default rounding mode, as Python's round.
      ranges[s] = ElementRange{static_cast<int64_t>(std::nearbyint(lo * static_cast<double>(element_count))),
                               static_cast<int64_t>(std::nearbyint(hi * static_cast<double>(element_count)))};
    }
    lo = hi;
  }
  return ranges;
}

}  // namespace tessera
