#include "data/gpt_dataset_indices.h"

#include <limits>
#include <numeric>

#include "core/check.h"

namespace tessera {

GptEpochPlan plan_gpt_epochs(int64_t tokens_per_epoch, int64_t sequence_length, std::optional<int64_t> num_samples) {
  GptEpochPlan plan;
  plan.tokens_per_epoch = tokens_per_epoch;
  if (!num_samples) return plan;
  const int64_t tokens_requested = *num_samples * sequence_length + 1;
  int64_t tokens = tokens_per_epoch;
  while (tokens < tokens_requested) {
    ++plan.num_epochs;
    tokens += tokens_per_epoch;
  }
  if (plan.num_epochs == 1) return plan;
  plan.samples_before_final_epoch = ((plan.num_epochs - 1) * tokens_per_epoch - 1) / sequence_length;
  const int64_t samples_from_final_epoch = *num_samples - plan.samples_before_final_epoch;
  const int64_t samples_per_epoch = (tokens_per_epoch - 1) / sequence_length;
  TS_CHECK(samples_from_final_epoch >= 0 && samples_from_final_epoch <= samples_per_epoch + 1,
           "GPT epoch plan: ", samples_from_final_epoch, " samples from the final epoch of ", samples_per_epoch);
  plan.separate_final_epoch =
      samples_from_final_epoch < static_cast<int64_t>(0.80 * static_cast<double>(samples_per_epoch));
  return plan;
}

std::vector<int32_t> build_gpt_document_index(int64_t begin, int64_t end, int64_t num_epochs, bool separate_final_epoch,
                                              NumpyRandomState& random) {
  TS_CHECK(end <= std::numeric_limits<int32_t>::max(), "GPT document index: sequence ids up to ", end,
           " do not fit int32 (Megatron's document index dtype)");
  if (separate_final_epoch && num_epochs > 1) {
    std::vector<int32_t> index = build_gpt_document_index(begin, end, num_epochs - 1, false, random);
    std::vector<int32_t> last = build_gpt_document_index(begin, end, 1, false, random);
    index.insert(index.end(), last.begin(), last.end());
    return index;
  }
  std::vector<int32_t> index;
  index.reserve(static_cast<size_t>((end - begin) * num_epochs));
  for (int64_t epoch = 0; epoch < num_epochs; ++epoch) {
    for (int64_t sequence = begin; sequence < end; ++sequence) index.push_back(static_cast<int32_t>(sequence));
  }
  random.shuffle(std::span<int32_t>(index));
  return index;
}

std::vector<int64_t> build_gpt_sample_index(std::span<const int32_t> sequence_lengths,
                                            std::span<const int32_t> document_index, int64_t sequence_length,
                                            int64_t num_epochs, int64_t tokens_per_epoch) {
  TS_CHECK(sequence_length >= 1 && !document_index.empty(), "GPT sample index: sequence_length ", sequence_length,
           " over ", document_index.size(), " documents");
  const int64_t num_samples = (num_epochs * tokens_per_epoch - 1) / sequence_length;
  std::vector<int64_t> samples;
  samples.reserve(static_cast<size_t>(2 * (num_samples + 1)));
  int64_t position = 0;  // into document_index
  int64_t offset = 0;    // token offset in that document
  samples.push_back(position);
  samples.push_back(offset);
  const int64_t last_position = static_cast<int64_t>(document_index.size()) - 1;
  for (int64_t sample = 1; sample <= num_samples; ++sample) {
    int64_t remaining = sequence_length + 1;
    while (remaining != 0) {
      const int64_t length = sequence_lengths[static_cast<size_t>(document_index[position])] - offset;
      remaining -= length;
      if (remaining <= 0) {
        // The sample ends inside this document; the next starts on its last token.
        offset += remaining + length - 1;
        remaining = 0;
      } else if (position == last_position) {
        // Only the final sample can run out of documents (its extra token is the last one).
        TS_CHECK(sample == num_samples, "GPT sample index ran out of documents at sample ", sample, " of ",
                 num_samples);
        offset = sequence_lengths[static_cast<size_t>(document_index[position])] - 1;
        break;
      } else {
        ++position;
        offset = 0;
      }
    }
    samples.push_back(position);
    samples.push_back(offset);
  }
  return samples;
}

std::vector<int64_t> build_gpt_shuffle_index(int64_t first_part, int64_t total, NumpyRandomState& random) {
  std::vector<int64_t> index(static_cast<size_t>(total));
  std::iota(index.begin(), index.end(), int64_t{0});
  random.shuffle(std::span<int64_t>(index.data(), static_cast<size_t>(first_part)));
  if (first_part < total) {
    random.shuffle(std::span<int64_t>(index.data() + first_part, static_cast<size_t>(total - first_part)));
  }
  return index;
}

}  // namespace tessera
