// Pipeline layouts: even, uneven (first/last stage) and layout-string splits against hand-worked
// placements and Megatron-core's offset formulas; every layer placed exactly once over a grid
// of options and random layout strings; bad layouts refused with a reason naming the option.
#include "parallel/pipeline_layout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <numeric>
#include <random>

#include "core/check.h"

namespace tessera {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<int64_t> range(int64_t begin, int64_t end) {
  std::vector<int64_t> out(size_t(end - begin));
  std::iota(out.begin(), out.end(), begin);
  return out;
}

PipelineLayoutOptions opts(int64_t num_layers, int pp, std::optional<int> vpp = std::nullopt,
                           std::optional<int64_t> first = std::nullopt, std::optional<int64_t> last = std::nullopt,
                           std::string layout = "") {
  PipelineLayoutOptions o;
  o.num_layers = num_layers;
  o.pp = pp;
  o.vpp = vpp;
  o.decoder_first_pipeline_num_layers = first;
  o.decoder_last_pipeline_num_layers = last;
  o.pipeline_model_parallel_layout = std::move(layout);
  return o;
}

std::string error_of(const PipelineLayoutOptions& options) {
  try {
    PipelineLayout layout(options);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// Megatron-core's get_transformer_layer_offset for uneven first/last stages (the layer index of
// the first layer of (stage, chunk)), written out independently of PipelineLayout.
int64_t megatron_uneven_offset(int64_t num_layers, int pp, int vpp, std::optional<int64_t> first,
                               std::optional<int64_t> last, int stage, int chunk) {
  int middle_stages = pp - (first ? 1 : 0) - (last ? 1 : 0);
  int64_t middle = num_layers - first.value_or(0) - last.value_or(0);
  if (vpp == 1) {
    int64_t per_rank = middle_stages > 0 ? middle / middle_stages : 0;
    int middle_rank = first ? stage - 1 : stage;
    return stage == 0 ? 0 : middle_rank * per_rank + first.value_or(0);
  }
  int64_t first_per_chunk = first.value_or(0) / vpp, last_per_chunk = last.value_or(0) / vpp;
  int64_t middle_per_chunk = middle / vpp;
  int64_t round = first_per_chunk + middle_per_chunk + last_per_chunk;
  if (stage == 0) return chunk * round;
  return chunk * round + first_per_chunk + (stage - 1) * (middle_per_chunk / middle_stages);
}

TEST(PipelineLayoutTest, EvenSplitGivesEveryStageAnEqualContiguousRun) {
  PipelineLayout layout(opts(8, 4));
  EXPECT_EQ(layout.vpp(), 1);
  for (int s = 0; s < 4; ++s) EXPECT_EQ(layout.layers(s, 0), range(2 * s, 2 * s + 2)) << "stage " << s;
  EXPECT_EQ(layout.embedding(), (StageChunk{0, 0}));
  EXPECT_EQ(layout.head(), (StageChunk{3, 0}));
}

TEST(PipelineLayoutTest, InterleavedEvenSplitWalksStagesThenChunks) {
  // Virtual stage k = chunk * pp + stage holds layers [2k, 2k + 2).
  PipelineLayout layout(opts(16, 4, 2));
  for (int c = 0; c < 2; ++c) {
    for (int s = 0; s < 4; ++s) {
      int k = c * 4 + s;
      EXPECT_EQ(layout.layers(s, c), range(2 * k, 2 * k + 2)) << "stage " << s << " chunk " << c;
    }
  }
  EXPECT_EQ(layout.head(), (StageChunk{3, 1}));
  EXPECT_EQ(layout.location(9), (StageChunk{0, 1}));
}

TEST(PipelineLayoutTest, UnevenFirstAndLastStages) {
  PipelineLayout layout(opts(14, 4, std::nullopt, 2, 2));
  EXPECT_EQ(layout.layers(0, 0), range(0, 2));
  EXPECT_EQ(layout.layers(1, 0), range(2, 7));
  EXPECT_EQ(layout.layers(2, 0), range(7, 12));
  EXPECT_EQ(layout.layers(3, 0), range(12, 14));
}

TEST(PipelineLayoutTest, UnevenSplitsMatchMegatronOffsets) {
  struct Case {
    int64_t num_layers;
    int pp, vpp;
    std::optional<int64_t> first, last;
  };
  // clang-format off
  const std::vector<Case> cases = {
      {14, 4, 1, 2, 2},  {13, 4, 1, 1, std::nullopt}, {10, 3, 1, std::nullopt, 4}, {6, 2, 1, 2, 4},
      {20, 4, 2, 2, 2},  {24, 4, 2, 4, 4},            {22, 3, 2, 8, 6},            {18, 4, 3, 3, 3},
  };
  // clang-format on
  for (const auto& c : cases) {
    PipelineLayout layout(opts(c.num_layers, c.pp, c.vpp, c.first, c.last));
    for (int chunk = 0; chunk < c.vpp; ++chunk) {
      for (int s = 0; s < c.pp; ++s) {
        const auto& layers = layout.layers(s, chunk);
        ASSERT_FALSE(layers.empty());
        EXPECT_EQ(layers.front(), megatron_uneven_offset(c.num_layers, c.pp, c.vpp, c.first, c.last, s, chunk))
            << c.num_layers << " layers, pp " << c.pp << ", vpp " << c.vpp << ", stage " << s << ", chunk " << chunk;
      }
    }
  }
}

TEST(PipelineLayoutTest, LayoutStringPlacesLayersInVirtualStageOrder) {
  PipelineLayout edges(opts(14, 4, std::nullopt, std::nullopt, std::nullopt, "Et*3|t*4|t*4|t*3L"));
  EXPECT_EQ(edges.layers(0, 0), range(0, 3));
  EXPECT_EQ(edges.layers(1, 0), range(3, 7));
  EXPECT_EQ(edges.layers(3, 0), range(11, 14));

  // Megatron's documentation pattern "Et*3|(tt|)*29,m|L" without the MTP layer, on pp 4 x vpp 2:
  // 8 virtual stages E+1, 2, 2, 2 | 2, 2, 2, L.
  PipelineLayout interleaved(opts(13, 4, std::nullopt, std::nullopt, std::nullopt, "Et|(tt|)*6,L"));
  EXPECT_EQ(interleaved.vpp(), 2);
  EXPECT_EQ(interleaved.layers(0, 0), range(0, 1));
  EXPECT_EQ(interleaved.layers(1, 0), range(1, 3));
  EXPECT_EQ(interleaved.layers(0, 1), range(7, 9));
  EXPECT_EQ(interleaved.layers(2, 1), range(11, 13));
  EXPECT_THAT(interleaved.layers(3, 1), IsEmpty());  // only the loss
  EXPECT_EQ(interleaved.head(), (StageChunk{3, 1}));
  EXPECT_EQ(interleaved.location(12), (StageChunk{2, 1}));
}

TEST(PipelineLayoutTest, LayoutStringSyntax) {
  EXPECT_THAT(parse_pipeline_layout_string("E||t|L"), ElementsAre(0, 0, 1, 0));            // empty stages are legal
  EXPECT_THAT(parse_pipeline_layout_string("E(t(t|)*2)*2L"), ElementsAre(2, 1, 2, 1, 0));  // groups nest
  EXPECT_THAT(parse_pipeline_layout_string("Et,t,|t*0|(t)*3,L"), ElementsAre(2, 0, 3));    // commas cosmetic
  EXPECT_THAT(parse_pipeline_layout_string("E|*3tL"), ElementsAre(0, 0, 0, 1));            // a separator repeats too
}

TEST(PipelineLayoutTest, DescribeNamesEveryChunk) {
  PipelineLayout layout(opts(16, 2, 2));
  EXPECT_EQ(layout.describe(),
            "stage 0: chunk 0 E + layers 0-3 | chunk 1 layers 8-11\n"
            "stage 1: chunk 0 layers 4-7 | chunk 1 layers 12-15 + L\n");
}

// Every layer on exactly one (stage, chunk), runs contiguous in virtual-stage order, and
// location() agrees with layers().
void expect_each_layer_once(const PipelineLayout& layout, const std::string& what) {
  std::vector<int> seen(size_t(layout.num_layers()), 0);
  int64_t next = 0;
  for (int c = 0; c < layout.vpp(); ++c) {
    for (int s = 0; s < layout.pp(); ++s) {
      for (int64_t layer : layout.layers(s, c)) {
        ASSERT_GE(layer, 0) << what;
        ASSERT_LT(layer, layout.num_layers()) << what;
        ++seen[size_t(layer)];
        EXPECT_EQ(layer, next++) << what;
        EXPECT_EQ(layout.location(layer), (StageChunk{s, c})) << what;
      }
    }
  }
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], 1) << what << ": layer " << i;
}

TEST(PipelineLayoutTest, EveryLayerExactlyOnceOverAGridOfOptions) {
  int valid = 0, refused = 0;
  for (int64_t n = 1; n <= 24; ++n) {
    for (int pp = 1; pp <= 6; ++pp) {
      for (int vpp = 1; vpp <= 3; ++vpp) {
        for (int64_t first = 0; first <= 6; ++first) {
          for (int64_t last = 0; last <= 6; ++last) {
            PipelineLayoutOptions o = opts(n, pp, vpp);
            if (first) o.decoder_first_pipeline_num_layers = first;
            if (last) o.decoder_last_pipeline_num_layers = last;
            std::string what = detail::concat("n ", n, " pp ", pp, " vpp ", vpp, " first ", first, " last ", last);
            try {
              PipelineLayout layout(o);
              expect_each_layer_once(layout, what);
              ++valid;
            } catch (const Error&) {
              ++refused;  // the refusals' reasons are checked below
            }
          }
        }
      }
    }
  }
  EXPECT_GT(valid, 1000);
  EXPECT_GT(refused, 1000);
}

TEST(PipelineLayoutTest, EveryLayerExactlyOnceForRandomLayoutStrings) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    int pp = 1 + int(rng() % 5), vpp = pp == 1 ? 1 : 1 + int(rng() % 3);
    std::vector<int64_t> counts(size_t(pp * vpp));
    std::string text = "E";
    int64_t total = 0;
    for (size_t k = 0; k < counts.size(); ++k) {
      counts[k] = rng() % 5;
      total += counts[k];
      // Mix the spellings: t*n, repeated t's, a group.
      if (counts[k] > 1 && rng() % 3 == 0) {
        text += "t*";
        text += std::to_string(counts[k]);
      } else if (counts[k] > 0 && rng() % 2 == 0) {
        text += "(t)*";
        text += std::to_string(counts[k]);
      } else {
        text += std::string(size_t(counts[k]), 't');
      }
      text += k + 1 < counts.size() ? "|" : "L";
    }
    if (total == 0) continue;
    EXPECT_EQ(parse_pipeline_layout_string(text), counts) << text;
    PipelineLayout layout(opts(total, pp, std::nullopt, std::nullopt, std::nullopt, text));
    EXPECT_EQ(layout.vpp(), vpp) << text;
    for (size_t k = 0; k < counts.size(); ++k) {
      EXPECT_EQ(int64_t(layout.layers(int(k) % pp, int(k) / pp).size()), counts[k]) << text << " stage " << k;
    }
    expect_each_layer_once(layout, text);
  }
}

TEST(PipelineLayoutTest, UnplaceableSplitsAreRefusedNamingTheOption) {
  EXPECT_THAT(error_of(opts(30, 4)),
              AllOf(HasSubstr("num_layers 30 is not divisible by pipeline_model_parallel_size 4"),
                    HasSubstr("decoder_first_pipeline_num_layers")));
  EXPECT_THAT(error_of(opts(16, 4, 3)), HasSubstr("virtual_pipeline_model_parallel_size 3"));
  EXPECT_THAT(
      error_of(opts(14, 4, 2, 3)),
      HasSubstr("decoder_first_pipeline_num_layers 3 is not divisible by virtual_pipeline_model_parallel_size 2"));
  EXPECT_THAT(error_of(opts(4, 3, std::nullopt, 3, 3)), HasSubstr("exceed num_layers 4"));
  EXPECT_THAT(error_of(opts(13, 4, std::nullopt, 2, 2)),
              HasSubstr("the 9 layers left by decoder_first_pipeline_num_layers / decoder_last_pipeline_num_layers "
                        "do not divide evenly over 2 middle stages"));
  EXPECT_THAT(error_of(opts(10, 2, std::nullopt, 4, 4)), HasSubstr("leaves 2 layers for 0 middle stages"));
  EXPECT_THAT(error_of(opts(8, 3, std::nullopt, 4, 4)), HasSubstr("leaves 0 layers for 1 middle stages"));
  EXPECT_THAT(error_of(opts(8, 2, std::nullopt, std::nullopt, -1)),
              HasSubstr("decoder_last_pipeline_num_layers must be >= 1, got -1"));
  EXPECT_THAT(error_of(opts(8, 1, std::nullopt, 4)), HasSubstr("need pipeline_model_parallel_size >= 2"));
  EXPECT_THAT(error_of(opts(8, 1, 2)), HasSubstr("needs pipeline_model_parallel_size >= 2"));
  EXPECT_THAT(error_of(opts(0, 1)), HasSubstr("num_layers must be >= 1"));
}

TEST(PipelineLayoutTest, BadLayoutStringsAreRefusedWithTheReason) {
  auto with = [](int64_t n, int pp, std::string text, std::optional<int> vpp = std::nullopt) {
    return error_of(opts(n, pp, vpp, std::nullopt, std::nullopt, std::move(text)));
  };
  EXPECT_THAT(with(3, 2, "Et|tL"),
              AllOf(HasSubstr("pipeline_model_parallel_layout \"Et|tL\" places 2 transformer layers (t) but num_layers "
                              "is 3"),
                    HasSubstr("exactly once")));
  EXPECT_THAT(with(3, 2, "Ettt|tL"), HasSubstr("places 4 transformer layers"));
  EXPECT_THAT(with(3, 2, "Et|t|tL"), HasSubstr("has 3 stages ('|'-separated), not a multiple of "
                                               "pipeline_model_parallel_size 2"));
  EXPECT_THAT(with(4, 2, "Et|t|t|tL", 3), HasSubstr("but virtual_pipeline_model_parallel_size is 3"));
  EXPECT_THAT(with(2, 2, "Etx|tL"), HasSubstr("unknown symbol 'x' at position 2"));
  EXPECT_THAT(with(2, 2, "Et|tmL"), HasSubstr("MTP layers are not supported"));
  EXPECT_THAT(with(2, 2, "tE|tL"), HasSubstr("E (embedding) must be the first symbol of the first stage"));
  EXPECT_THAT(with(2, 2, "Et|Lt"), HasSubstr("L (loss) must be the last symbol of the last stage"));
  EXPECT_THAT(with(2, 2, "t|tL"), HasSubstr("exactly one E (first) and one L (last), got 0 E and 1 L"));
  EXPECT_THAT(with(2, 2, "E(t|tL"), HasSubstr("'(' at position 1 is never closed"));
  EXPECT_THAT(with(2, 2, "Et)|tL"), HasSubstr("unmatched ')' at position 2"));
  EXPECT_THAT(with(2, 2, "Et*|tL"), HasSubstr("'*' at position 2 must be followed by a repeat count"));
  EXPECT_THAT(with(2, 2, "E(t*100000)*100000|L"), HasSubstr("expands to more than"));
  EXPECT_THAT(with(2, 2, ""), HasSubstr("no error"));  // empty = not set: the even split
  EXPECT_THAT(error_of(opts(2, 2, std::nullopt, 1, std::nullopt, "Et|tL")),
              HasSubstr("set either pipeline_model_parallel_layout or decoder_first_pipeline_num_layers"));
}

}  // namespace
}  // namespace tessera
