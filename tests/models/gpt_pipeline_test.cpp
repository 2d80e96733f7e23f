// GptModel pipeline pieces on one process, against the whole model: every piece holds exactly
// its layout's layers (+ embedding first, final norm and head last) under their global names,
// with bit-identical initial values (the tied table's copy on the last piece too); over a grid
// of layouts every layer is built exactly once; the pieces chained by hand (each input a fresh
// leaf, backward piece by piece in reverse) give the whole model's loss and gradients; misuse of
// a piece is refused in one line. The multi-rank version is tests/mpi/pipeline_model_test.cpp.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/ops/ops.h"
#include "models/gpt_model.h"
#include "support/tiny_models.h"

namespace tessera {
namespace {

constexpr uint64_t kSeed = 77;

TransformerConfig tiny(bool llama, int64_t layers) {
  TransformerConfig c = testing::tiny_transformer(llama);
  c.num_layers = layers;
  return c;
}

// One model per virtual stage of `layout`, in virtual-stage (forward) order.
std::vector<std::unique_ptr<GptModel>> pieces_of(const TransformerConfig& config, const PipelineLayout& layout) {
  std::vector<std::unique_ptr<GptModel>> pieces;
  for (int chunk = 0; chunk < layout.vpp(); ++chunk)
    for (int stage = 0; stage < layout.pp(); ++stage)
      pieces.push_back(std::make_unique<GptModel>(
          config, kSeed, ParamOptions{}, ModelParallelism{.pipeline = layout, .pipeline_stage = {stage, chunk}}));
  return pieces;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.to_vector<float>() == b.to_vector<float>();
}

// Assigned member by member: PipelineLayoutOptions' optional members have no default
// initialisers, so designated initialisers that skip them trip -Wmissing-field-initializers.
PipelineLayoutOptions layout_options(int64_t layers, int pp, int vpp = 1, std::string layout_string = "") {
  PipelineLayoutOptions options;
  options.num_layers = layers;
  options.pp = pp;
  if (layout_string.empty()) options.vpp = vpp;
  options.pipeline_model_parallel_layout = std::move(layout_string);
  return options;
}

// Layouts of 4 layers for 1-4 stages: even, interleaved, uneven edges, layout strings with a
// stage holding only the embedding, only the loss, or nothing.
std::vector<PipelineLayoutOptions> layouts_of_four() {
  PipelineLayoutOptions light_first = layout_options(4, 3);
  light_first.decoder_first_pipeline_num_layers = 2;
  return {layout_options(4, 1),
          layout_options(4, 2),
          layout_options(4, 4),
          layout_options(4, 2, 2),
          light_first,
          layout_options(4, 2, 1, "E|tttt,L"),
          layout_options(4, 2, 1, "Et||ttt|L"),
          layout_options(4, 4, 1, "E|tt|tt|L")};
}

TEST(GptPipeline, PiecesHoldTheirLayersWithTheWholeModelsInitialValues) {
  for (bool llama : {false, true}) {
    const TransformerConfig config = tiny(llama, 4);
    GptModel whole(config, kSeed);
    std::map<std::string, Tensor> reference;
    for (const auto& [name, p] : whole.named_parameters()) reference[name] = p;
    for (const PipelineLayoutOptions& options : layouts_of_four()) {
      PipelineLayout layout(options);
      SCOPED_TRACE(config.name + ", " + layout.describe());
      std::map<std::string, int> holders;
      auto pieces = pieces_of(config, layout);
      for (size_t k = 0; k < pieces.size(); ++k) {
        const GptModel& piece = *pieces[k];
        EXPECT_EQ(piece.has_embedding(), k == 0);
        EXPECT_EQ(piece.has_head(), k + 1 == pieces.size());
        const StageChunk where{static_cast<int>(k) % layout.pp(), static_cast<int>(k) / layout.pp()};
        EXPECT_EQ(piece.layer_indices(), layout.layers(where.stage, where.chunk));
        for (const auto& [name, p] : piece.named_parameters()) {
          ++holders[name];
          ASSERT_TRUE(reference.contains(name)) << name << " is not a parameter of the whole model";
          EXPECT_TRUE(bitwise_equal(p, reference.at(name))) << name << " on virtual stage " << k;
        }
      }
      for (const auto& [name, p] : reference) {
        // The tied table lives on the first piece and, as the output layer, on the last one.
        const bool copied =
            name == "embedding.word_embeddings.weight" && config.tie_word_embeddings && pieces.size() > 1;
        EXPECT_EQ(holders[name], copied ? 2 : 1) << name;
      }
    }
  }
}

TEST(GptPipeline, EveryLayerIsBuiltExactlyOnceOverAGridOfLayouts) {
  int layouts = 0;
  for (int64_t layers = 1; layers <= 6; ++layers)
    for (int pp = 1; pp <= 4; ++pp)
      for (int vpp = 1; vpp <= 2; ++vpp)
        for (int64_t first = 0; first <= 2; ++first)
          for (int64_t last = 0; last <= 2; ++last) {
            PipelineLayoutOptions options = layout_options(layers, pp, vpp);
            if (first > 0) options.decoder_first_pipeline_num_layers = first;
            if (last > 0) options.decoder_last_pipeline_num_layers = last;
            std::unique_ptr<PipelineLayout> layout;
            try {
              layout = std::make_unique<PipelineLayout>(options);
            } catch (const Error&) {
              continue;  // a refused option set (pipeline_layout_test checks those)
            }
            ++layouts;
            std::vector<int> built(static_cast<size_t>(layers), 0);
            int embeddings = 0, heads = 0;
            for (const auto& piece : pieces_of(tiny(false, layers), *layout)) {
              for (int64_t i : piece->layer_indices()) ++built[static_cast<size_t>(i)];
              embeddings += piece->has_embedding();
              heads += piece->has_head();
            }
            EXPECT_EQ(built, std::vector<int>(static_cast<size_t>(layers), 1)) << layout->describe();
            EXPECT_EQ(embeddings, 1) << layout->describe();
            EXPECT_EQ(heads, 1) << layout->describe();
          }
  EXPECT_GT(layouts, 40);
}

LmBatch batch_for(const TransformerConfig& c) {
  std::vector<int64_t> tokens, labels;
  for (int64_t i = 0; i < 2 * 6; ++i) {
    tokens.push_back((i * 7 + 3) % c.vocab_size);
    labels.push_back(i % 5 == 2 ? -100 : (i * 11 + 1) % c.vocab_size);
  }
  return {Tensor::from_vector(tokens, {2, 6}), Tensor::from_vector(labels, {2, 6}), Tensor()};
}

double relative_error(const Tensor& got, const Tensor& expected) {
  std::vector<float> a = got.to_vector<float>(), b = expected.to_vector<float>();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - b[i]));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

TEST(GptPipeline, ChainedPiecesGiveTheWholeModelsLossAndGradients) {
  for (bool llama : {false, true}) {
    const TransformerConfig config = tiny(llama, 4);
    const LmBatch batch = batch_for(config);
    GptModel whole(config, kSeed);
    Tensor expected_loss = whole.loss(batch);
    expected_loss.backward();
    std::map<std::string, Tensor> expected;
    for (const auto& [name, p] : whole.named_parameters()) expected[name] = p.grad();
    for (const PipelineLayoutOptions& options : layouts_of_four()) {
      PipelineLayout layout(options);
      SCOPED_TRACE(config.name + ", " + layout.describe());
      auto pieces = pieces_of(config, layout);
      // Forward: each piece's input is a fresh leaf, as if received from the previous stage.
      std::vector<Tensor> inputs, outputs;
      for (size_t k = 0; k < pieces.size(); ++k) {
        Tensor input = k == 0 ? batch.tokens : outputs.back().detach().set_requires_grad(true);
        inputs.push_back(input);
        outputs.push_back(k + 1 == pieces.size() ? pieces[k]->stage_loss(input, batch)
                                                 : pieces[k]->forward_stage(input));
      }
      EXPECT_LE(relative_error(outputs.back(), expected_loss), 1e-6);
      for (size_t k = pieces.size(); k-- > 0;) {
        if (k + 1 == pieces.size()) {
          outputs[k].backward();
        } else {
          outputs[k].backward(inputs[k + 1].grad());
        }
      }
      Tensor tied_sum;  // the two copies' gradients add up to the whole model's
      for (const auto& piece : pieces) {
        for (const auto& [name, p] : piece->named_parameters()) {
          if (name == "embedding.word_embeddings.weight" && config.tie_word_embeddings && pieces.size() > 1) {
            tied_sum = tied_sum.defined() ? add(tied_sum, p.grad()) : p.grad();
            continue;
          }
          EXPECT_LE(relative_error(p.grad(), expected.at(name)), 1e-5) << name;
        }
      }
      if (tied_sum.defined()) {
        EXPECT_LE(relative_error(tied_sum, expected.at("embedding.word_embeddings.weight")), 1e-5);
      }
    }
  }
}

TEST(GptPipeline, OnlyTheLastPiecesTiedTableIsASharedCopy) {
  PipelineLayout layout(layout_options(4, 2));
  for (bool llama : {false, true}) {
    auto pieces = pieces_of(tiny(llama, 4), layout);
    for (size_t k = 0; k < pieces.size(); ++k) {
      std::vector<bool> shared = pieces[k]->parameter_is_shared_copy();
      auto named = pieces[k]->named_parameters();
      ASSERT_EQ(shared.size(), named.size());
      for (size_t i = 0; i < named.size(); ++i)
        EXPECT_EQ(shared[i], !llama && k == 1 && named[i].first == "embedding.word_embeddings.weight")
            << named[i].first;
    }
  }
  GptModel whole(tiny(false, 4), kSeed);
  EXPECT_EQ(whole.parameter_is_shared_copy(), std::vector<bool>(whole.parameters().size(), false));
}

template <typename Call>
void expect_rejected(Call call, const std::string& reason) {
  try {
    call();
    ADD_FAILURE() << "expected an error containing '" << reason << "'";
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find(reason), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
  }
}

TEST(GptPipeline, MisuseIsRefusedInOneLine) {
  const TransformerConfig config = tiny(true, 4);
  PipelineLayout layout(layout_options(4, 2));
  expect_rejected([&] { GptModel(tiny(true, 6), kSeed, {}, {.pipeline = layout}); },
                  "the pipeline layout places 4 layers but model.num_layers is 6");
  expect_rejected(
      [&] {
        GptModel(config, kSeed, {}, {.pipeline = layout, .pipeline_stage = {2, 0}});
      },
      "pipeline_stage (stage 2, chunk 0) is outside the layout's pipeline_model_parallel_size 2");
  expect_rejected(
      [&] {
        GptModel(config, kSeed, {}, {.pipeline = layout, .pipeline_stage = {0, 1}});
      },
      "pipeline_stage (stage 0, chunk 1) is outside");
  auto pieces = pieces_of(config, layout);
  const LmBatch batch = batch_for(config);
  expect_rejected([&] { pieces[1]->forward_stage(Tensor::zeros({2, 6, 16})); }, "call stage_loss");
  expect_rejected([&] { pieces[0]->stage_loss(batch.tokens, batch); }, "call forward_stage");
  expect_rejected([&] { pieces[0]->loss(batch); }, "loss(batch) runs the whole model");
  expect_rejected([&] { pieces[0]->forward(batch.tokens); }, "forward(tokens) runs the whole model");
  expect_rejected([&] { pieces[1]->new_kv_cache(2, 6); }, "KV-cache decoding runs the whole model");
  expect_rejected(
      [&] {
        pieces[1]->stage_loss(Tensor::zeros({2, 6, 8}), batch);
      },
      "takes the previous piece's hidden states [B, T, 16], got [2, 6, 8]");
  expect_rejected([&] { pieces[1]->stage_loss(batch.tokens, batch); }, "takes the previous piece's hidden states");
}

}  // namespace
}  // namespace tessera
