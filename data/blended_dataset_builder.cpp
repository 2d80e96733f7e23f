#include "data/blended_dataset_builder.h"

#include <cmath>
#include <cstdlib>

#include "core/check.h"
#include "data/blended_dataset.h"

namespace tessera {
namespace {

using SplitRanges = std::array<std::optional<ElementRange>, kDatasetSplitCount>;

SplitRanges ranges_of(const IndexedDataset& indexed, const std::string& split) {
  return split_element_ranges(parse_split_weights(split), indexed.sequence_count());
}

}  // namespace

DataBlend parse_data_blend(const std::vector<std::string>& words) {
  TS_CHECK(!words.empty(),
           "data path is empty; give a dataset prefix (PREFIX for PREFIX.bin/.idx) or weighted "
           "prefixes like \"0.3 PREFIX_A 0.7 PREFIX_B\"");
  DataBlend blend;
  if (words.size() == 1) {
    blend.prefixes = words;
    return blend;
  }
  std::string joined;
  for (const std::string& word : words) joined += (joined.empty() ? "" : " ") + word;
  TS_CHECK(words.size() % 2 == 0, "data path \"", joined,
           "\": a blend is weight/prefix pairs like "
           "\"0.3 PREFIX_A 0.7 PREFIX_B\"; got an odd number of words");
  for (size_t i = 0; i < words.size(); i += 2) {
    char* end = nullptr;
    double weight = std::strtod(words[i].c_str(), &end);
    TS_CHECK(end == words[i].c_str() + words[i].size() && !words[i].empty() && std::isfinite(weight) && weight > 0,
             "data path: '", words[i], "' (before prefix '", words[i + 1],
             "') is not a positive weight; a blend is weight/prefix pairs like \"0.3 PREFIX_A 0.7 PREFIX_B\"");
    blend.weights.push_back(weight);
    blend.prefixes.push_back(words[i + 1]);
  }
  return blend;
}

SplitDatasets build_gpt_split_datasets(const DataBlend& blend, const std::string& split,
                                       const SplitSampleCounts& samples, const GptDatasetConfig& config) {
  TS_CHECK(!blend.prefixes.empty(), "no dataset prefixes to build from");
  TS_CHECK(blend.weights.empty() || blend.weights.size() == blend.prefixes.size(),
           "data blend: ", blend.prefixes.size(), " prefixes but ", blend.weights.size(), " weights");
  std::vector<std::shared_ptr<const IndexedDataset>> indexed;
  for (const std::string& prefix : blend.prefixes) indexed.push_back(std::make_shared<IndexedDataset>(prefix));

  SplitDatasets datasets;
  if (blend.weights.empty()) {
    TS_CHECK(indexed.size() == 1, "a blend of ", indexed.size(), " prefixes needs a weight per prefix");
    SplitRanges ranges = ranges_of(*indexed[0], split);
    for (int s = 0; s < kDatasetSplitCount; ++s) {
      if (!ranges[s] || samples[s] == int64_t{0}) continue;
      datasets[s] =
          std::make_shared<GptDataset>(indexed[0], static_cast<DatasetSplit>(s), *ranges[s], samples[s], config);
    }
    return datasets;
  }

  double total = 0.0;
  for (double weight : blend.weights) total += weight;
  for (int s = 0; s < kDatasetSplitCount; ++s) {
    if (samples[s] == int64_t{0}) continue;
    std::vector<std::shared_ptr<const TokenSampleDataset>> parts;
    for (size_t d = 0; d < indexed.size(); ++d) {
      SplitRanges ranges = ranges_of(*indexed[d], split);
      if (!ranges[s]) break;
      TS_CHECK(samples[s].has_value(), "a weighted blend needs a sample count for the ",
               dataset_split_name(static_cast<DatasetSplit>(s)), " split (Megatron's rule as well)");
      const double share = static_cast<double>(*samples[s]) * blend.weights[d] / total;
      const auto wanted = static_cast<int64_t>(std::ceil(share * 1.005));
      parts.push_back(std::make_shared<GptDataset>(indexed[d], static_cast<DatasetSplit>(s), *ranges[s],
                                                   std::max<int64_t>(wanted, 1), config));
    }
    if (parts.size() == indexed.size()) {
      datasets[s] = std::make_shared<BlendedDataset>(std::move(parts), blend.weights, *samples[s]);
    }
  }
  return datasets;
}

}  // namespace tessera
