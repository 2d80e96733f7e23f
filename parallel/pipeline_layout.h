// Pipeline layout: which transformer layers live on which (pipeline stage, model chunk).
//
// A model of `num_layers` transformer layers is cut into pp x vpp pieces, the "virtual stages".
// Virtual stage k = chunk * pp + stage (Megatron's order): the forward pass goes through stage 0,
// 1, ..., pp-1 with chunk 0, then again through every stage with chunk 1, and so on. Layers are
// numbered in forward order, so virtual stage k holds a contiguous run of layers that follows
// the run of virtual stage k-1. The embedding always sits on virtual stage 0 (stage 0, chunk 0)
// and the final norm, output head and loss on the last one (stage pp-1, chunk vpp-1).
//
// The split comes from one of (Megatron-LM's options, same names and rules):
//   - even: every virtual stage gets num_layers / (pp x vpp) layers;
//   - decoder_first_pipeline_num_layers / decoder_last_pipeline_num_layers: the first and/or
//     last stage get that many layers, the other ("middle") stages share the rest evenly; with
//     vpp > 1 every stage's count is split evenly over its chunks;
//   - pipeline_model_parallel_layout, Megatron-core's layout string: virtual stages separated by
//     '|', in virtual-stage order (so the string has pp x vpp stages, vpp = stages / pp);
//     symbols E (embedding), t (transformer layer), L (final norm + head + loss); `x*n` repeats a
//     symbol, `(...)*n` a group (groups may nest), commas are cosmetic. E must open the first
//     stage and L close the last; empty stages are allowed ("E||t|L"). Megatron's MTP symbol
//     'm' is not supported. Example, 14 layers on pp 4 with lighter edge stages: "Et*3|t*4|t*4|t*3L".
// Every layer is placed exactly once; anything else is refused with a one-line reason that names
// the option.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tessera {

struct PipelineLayoutOptions {
  int64_t num_layers = 0;
  int pp = 1;              // pipeline_model_parallel_size
  std::optional<int> vpp;  // virtual_pipeline_model_parallel_size (model chunks per stage); unset = 1,
                           // or what the layout string implies
  std::optional<int64_t> decoder_first_pipeline_num_layers;
  std::optional<int64_t> decoder_last_pipeline_num_layers;
  std::string pipeline_model_parallel_layout;  // empty: split by the options above
};

struct StageChunk {
  int stage = 0;
  int chunk = 0;
  bool operator==(const StageChunk&) const = default;
};

class PipelineLayout {
 public:
  // Validates the options and computes the split; throws tessera::Error with a one-line reason.
  explicit PipelineLayout(const PipelineLayoutOptions& options);

  int pp() const { return pp_; }
  int vpp() const { return vpp_; }
  int64_t num_layers() const { return num_layers_; }

  // Global layer indices (ascending, contiguous, possibly empty) of one (stage, chunk).
  const std::vector<int64_t>& layers(int stage, int chunk) const;
  // Where layer `layer` lives.
  StageChunk location(int64_t layer) const;
  // Virtual stage 0 holds the embedding; the last one the final norm, head and loss.
  StageChunk embedding() const { return {0, 0}; }
  StageChunk head() const { return {pp_ - 1, vpp_ - 1}; }

  // A table like Megatron's: one line per stage, "stage 0: chunk 0 E + layers 0-3 | chunk 1 layers 8-9".
  std::string describe() const;

 private:
  int pp_ = 1;
  int vpp_ = 1;
  int64_t num_layers_ = 0;
  std::vector<std::vector<int64_t>> layers_;  // [chunk * pp + stage]
};

// The number of layers of each virtual stage, in virtual-stage order, parsed from a layout
// string (see the header comment); checks the symbols and the E/L placement, not the counts.
std::vector<int64_t> parse_pipeline_layout_string(const std::string& layout);

}  // namespace tessera
