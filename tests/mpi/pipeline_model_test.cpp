// GptModel split into pipeline stages (GptPipelineStage), run as real ranks (np 2 and 4) and
// chained by hand without the executor: all forwards (micro-batch by micro-batch, virtual stage
// by virtual stage, activations sent with Communicator::send/recv), the loss on the last stage,
// then all backwards in reverse with the gradients sent back. Against the single-rank GptModel
// on the whole batch (f32, relative error <= 1e-5): the loss and every parameter's gradient,
// gathered over tp and looked up by its global name, for GPT (tied embeddings: the two copies'
// gradients summed over the embedding group) and Llama (untied), on pp = world (even,
// interleaved, and layout strings with stages that hold only the embedding, only the loss, or
// nothing) and pp 2 x tp 2 on 4 ranks (with and without sequence parallelism); then the losses
// of three AdamW steps, after which the tied copies are still bitwise equal. Every parameter is
// held by exactly one rank of a tp group (the tied table by two), every layer built exactly once
// over a grid of layouts, and bad layouts and misuse are refused in one line.
#include <gtest/gtest.h>
#include <mpi.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "models/gpt_pipeline_stage.h"
#include "optim/adamw.h"
#include "parallel/mpi_communicator.h"
#include "parallel/process_groups.h"
#include "tests/mpi/parallel_test_helpers.h"

namespace tessera {
namespace {

using testing::counted_tokens;
using testing::expect_rejected;
using testing::gather_shards;
using testing::relative_error;
using testing::Split;
using testing::split_of;

constexpr double kTolerance = 1e-5;
constexpr uint64_t kSeed = 4242;
constexpr int64_t kMicroBatchSize = 2, kMicroBatches = 2, kSeq = 8;
constexpr int kSteps = 3;
constexpr int kActivationTag = 0, kGradientTag = 1;
const AdamWOptions kAdamW{.lr = 1e-2, .weight_decay = 0.1};
const std::string kTable = "embedding.word_embeddings.weight";

// GPT flavour (LayerNorm, GELU, learned positions, biases, tied) and Llama flavour (RMSNorm,
// SwiGLU, rope, GQA, no biases, untied) of parallel_test_helpers.h, 4 layers.
TransformerConfig gpt_config() { return testing::tiny_gpt_config("pp-gpt", 4); }

TransformerConfig llama_config() { return testing::tiny_llama_config("pp-llama", 4); }

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

// The step's batch (the same on every rank): tokens, labels with ignored positions, a fractional mask.
LmBatch full_batch(const TransformerConfig& c) {
  std::vector<int64_t> tokens, labels;
  std::vector<float> mask;
  for (int64_t i = 0; i < kMicroBatchSize * kMicroBatches * kSeq; ++i) {
    tokens.push_back((i * 37 + 11) % c.vocab_size);
    labels.push_back(i % 9 == 4 ? -100 : (i * 53 + 7) % c.vocab_size);
    mask.push_back(i % 6 == 1 ? 0.5f : 1.0f);
  }
  const int64_t rows = kMicroBatchSize * kMicroBatches;
  return {Tensor::from_vector(tokens, {rows, kSeq}), Tensor::from_vector(labels, {rows, kSeq}),
          Tensor::from_vector(mask, {rows, kSeq})};
}

std::vector<LmBatch> micro_batches_of(const LmBatch& batch) {
  std::vector<LmBatch> micro;
  for (int64_t m = 0; m < kMicroBatches; ++m) {
    auto rows = [&](const Tensor& t) { return t.narrow(0, m * kMicroBatchSize, kMicroBatchSize).contiguous(); };
    micro.push_back({rows(batch.tokens), rows(batch.labels), rows(batch.loss_mask)});
  }
  return micro;
}


// The single-rank run: losses of kSteps AdamW steps on the whole batch, first-step gradients.
struct Reference {
  std::vector<double> losses;
  std::map<std::string, Tensor> grads;
};

Reference single_rank_run(const TransformerConfig& config) {
  GptModel model(config, kSeed);
  AdamW optimizer(model.parameters(), kAdamW);
  LmBatch batch = full_batch(config);
  Reference reference;
  for (int step = 0; step < kSteps; ++step) {
    model.zero_grad();
    Tensor loss = model.loss(batch);
    loss.backward();
    reference.losses.push_back(loss.item());
    if (step == 0) {
      for (const auto& [name, p] : model.named_parameters()) reference.grads[name] = p.grad().clone();
    }
    optimizer.step();
  }
  return reference;
}


struct Case {
  std::string name;
  int tp = 1;
  PipelineLayoutOptions layout;
  bool sequence_parallel = false;
};

// pp = world (even, interleaved, layout strings with edge-only and empty stages); on 4 ranks
// also pp 2 x tp 2, with sequence parallelism and interleaving.
std::vector<Case> cases_for(int world) {
  if (world == 2)
    return {{"pp 2", 1, layout_options(4, 2)},
            {"pp 2 x vpp 2", 1, layout_options(4, 2, 2)},
            {"pp 2, Et||ttt|L", 1, layout_options(4, 2, 1, "Et||ttt|L")}};
  return {{"pp 4", 1, layout_options(4, 4)},
          {"pp 4, E|tt|tt|L", 1, layout_options(4, 4, 1, "E|tt|tt|L")},
          {"pp 2 x tp 2", 2, layout_options(4, 2)},
          {"pp 2 x tp 2, sequence parallel", 2, layout_options(4, 2), true},
          {"pp 2 x vpp 2 x tp 2, sequence parallel", 2, layout_options(4, 2, 2), true}};
}

// Megatron's embedding group: this tp rank's first and last pp rank (the holders of the tied
// table); every other rank lands in a group of its own that it never uses.
std::unique_ptr<Communicator> embedding_group(const Communicator& world, const ProcessGroups& groups) {
  const ParallelLayout& layout = groups.layout();
  const ParallelCoords& at = groups.coords();
  const bool holder = at.pp == 0 || at.pp == layout.pp - 1;
  return world.split(holder ? at.tp : layout.tp + world.rank(), at.pp, "embedding");
}

// One step by hand (GPipe order). Returns the step's loss (sum of the micro-batches' summed
// losses over the token count) on the last pp rank, 0 elsewhere.
double run_step(GptPipelineStage& stage, Communicator& pp, double tokens) {
  const int pp_size = pp.size(), me = pp.rank();
  const int virtual_stages = pp_size * stage.num_chunks();
  std::map<std::pair<int64_t, int>, Tensor> inputs, outputs;
  double loss = 0;
  for (int64_t mb = 0; mb < kMicroBatches; ++mb) {
    for (int k = 0; k < virtual_stages; ++k) {
      if (k % pp_size != me) continue;
      const int chunk = k / pp_size;
      Tensor input;
      if (k > 0) {
        input = Tensor::empty(stage.input_shape(chunk), stage.activation_dtype());
        pp.recv(input, (k - 1) % pp_size, kActivationTag);
        input.set_requires_grad(true);
      }
      Tensor output = stage.forward(chunk, mb, input);
      if (k + 1 < virtual_stages) {
        pp.send(output.detach().contiguous(), (k + 1) % pp_size, kActivationTag);
      } else {
        loss += output.item() / tokens;
      }
      inputs[{mb, k}] = input;
      outputs[{mb, k}] = output;
    }
  }
  for (int64_t mb = kMicroBatches; mb-- > 0;) {
    for (int k = virtual_stages; k-- > 0;) {
      if (k % pp_size != me) continue;
      const int chunk = k / pp_size;
      const Tensor& output = outputs.at({mb, k});
      Tensor grad;
      if (k + 1 == virtual_stages) {
        grad = Tensor::full(output.shape(), 1.0 / tokens);  // each micro-batch's share of the mean
      } else {
        grad = Tensor::empty(stage.output_shape(chunk), stage.activation_dtype());
        pp.recv(grad, (k + 1) % pp_size, kGradientTag);
      }
      output.backward(grad);
      if (k > 0) pp.send(inputs.at({mb, k}).grad().contiguous(), (k - 1) % pp_size, kGradientTag);
    }
  }
  return loss;
}

// Every gradient this rank holds (gathered over tp) against the single-rank one; counts, over
// the world, how many tp groups hold each parameter.
void expect_gradients_match(const GptPipelineStage& stage, const Reference& reference, const ProcessGroups& groups,
                            Communicator& world) {
  const TransformerConfig& config = stage.chunk(0).config();
  Communicator* tp = groups.layout().tp > 1 ? &groups.tp() : nullptr;
  std::map<std::string, int> index;
  for (const auto& [name, grad] : reference.grads) index.emplace(name, static_cast<int>(index.size()));
  Tensor holders = Tensor::zeros({static_cast<int64_t>(index.size())});
  std::vector<float> held(index.size(), 0.0f);
  for (const auto& [name, p] : stage.named_parameters()) {
    ASSERT_TRUE(index.contains(name)) << name << " is not a parameter of the single-rank model";
    if (groups.coords().tp == 0) held[static_cast<size_t>(index.at(name))] += 1.0f;
    Split split = split_of(name, config);
    Tensor grad = split.sharded && tp != nullptr ? gather_shards(p.grad(), *tp, split) : p.grad();
    const Tensor& expected = reference.grads.at(name);
    const int64_t rows = split.vocabulary ? config.vocab_size : expected.size(0);
    EXPECT_LE(relative_error(grad.narrow(0, 0, rows), expected.narrow(0, 0, rows)), kTolerance) << name;
  }
  holders = Tensor::from_vector(held, {static_cast<int64_t>(held.size())});
  world.all_reduce(holders, ReduceOp::Sum);
  std::vector<float> counts = holders.to_vector<float>();
  const bool split_tied = config.tie_word_embeddings && groups.layout().pp > 1;
  for (const auto& [name, i] : index)
    EXPECT_EQ(counts[static_cast<size_t>(i)], name == kTable && split_tied ? 2.0f : 1.0f) << name << " holders";
}

void check_case(const TransformerConfig& config, const Reference& reference, const Case& c, Communicator& world) {
  SCOPED_TRACE(config.name + ", " + c.name);
  PipelineLayout layout(c.layout);
  ProcessGroups groups(world, {.tp = c.tp, .pp = layout.pp()});
  std::unique_ptr<Communicator> embedding = embedding_group(world, groups);
  GptPipelineStage stage(config, kSeed, layout, groups.coords().pp,
                         {.micro_batch_size = kMicroBatchSize, .seq_length = kSeq, .reduction = LossReduction::Sum}, {},
                         {.tp = c.tp > 1 ? &groups.tp() : nullptr, .sequence_parallel = c.sequence_parallel});
  AdamW optimizer(stage.parameters(), kAdamW);
  const LmBatch batch = full_batch(config);
  const double tokens = counted_tokens(batch);
  stage.set_micro_batches(micro_batches_of(batch));
  const bool last = groups.coords().pp == layout.pp() - 1;
  for (int step = 0; step < kSteps; ++step) {
    for (const Tensor& p : stage.parameters()) p.set_grad(Tensor());
    const double loss = run_step(stage, groups.pp(), tokens);
    stage.finalize_grads(embedding.get());
    if (last) {
      const double expected = reference.losses[size_t(step)];
      EXPECT_LE(std::abs(loss - expected) / expected, kTolerance) << "step " << step;
    }
    if (step == 0) expect_gradients_match(stage, reference, groups, world);
    optimizer.step();
  }
  // The two copies of the tied table took the same steps.
  const ParallelCoords& at = groups.coords();
  if (config.tie_word_embeddings && (at.pp == 0 || at.pp == layout.pp() - 1)) {
    Tensor mine;
    for (const auto& [name, p] : stage.named_parameters())
      if (name == kTable) mine = p.detach().contiguous().reshape({1, p.numel()});
    Tensor both = Tensor::empty({2, mine.size(1)});
    embedding->all_gather(mine, both);
    EXPECT_EQ(both.narrow(0, 0, 1).to_vector<float>(), both.narrow(0, 1, 1).to_vector<float>())
        << "tied copies drifted apart";
  }
}

class PipelineModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    gpt_reference_ = std::make_unique<Reference>(single_rank_run(gpt_config()));
    llama_reference_ = std::make_unique<Reference>(single_rank_run(llama_config()));
  }
  static void TearDownTestSuite() {
    gpt_reference_.reset();
    llama_reference_.reset();
  }

  MpiCommunicator world_{MPI_COMM_WORLD, "world"};
  static std::unique_ptr<Reference> gpt_reference_, llama_reference_;
};

std::unique_ptr<Reference> PipelineModelTest::gpt_reference_, PipelineModelTest::llama_reference_;

TEST_F(PipelineModelTest, TiedGptMatchesSingleRank) {
  for (const Case& c : cases_for(world_.size())) check_case(gpt_config(), *gpt_reference_, c, world_);
}

TEST_F(PipelineModelTest, UntiedLlamaMatchesSingleRank) {
  for (const Case& c : cases_for(world_.size())) check_case(llama_config(), *llama_reference_, c, world_);
}

TEST_F(PipelineModelTest, EveryLayerIsBuiltExactlyOnceOverTheRanks) {
  const int pp = world_.size();
  int layouts = 0;
  for (int64_t layers = 1; layers <= 12; ++layers)
    for (int vpp = 1; vpp <= 3; ++vpp)
      for (int64_t first = 0; first <= 3; ++first)
        for (int64_t last = 0; last <= 3; ++last) {
          PipelineLayoutOptions options = layout_options(layers, pp, vpp);
          if (first > 0) options.decoder_first_pipeline_num_layers = first;
          if (last > 0) options.decoder_last_pipeline_num_layers = last;
          std::unique_ptr<PipelineLayout> layout;
          try {
            layout = std::make_unique<PipelineLayout>(options);
          } catch (const Error&) {
            continue;  // refused on every rank alike (pipeline_layout_test checks the reasons)
          }
          ++layouts;
          TransformerConfig config = gpt_config();
          config.num_layers = layers;
          config.hidden_size = 8;
          config.num_attention_heads = config.num_query_groups = 2;
          config.ffn_hidden_size = 8;
          GptPipelineStage stage(config, kSeed, *layout, world_.rank(), {.micro_batch_size = 1, .seq_length = 4});
          std::vector<float> built(static_cast<size_t>(layers + 2), 0.0f);  // layers, embedding, head
          for (int c = 0; c < stage.num_chunks(); ++c) {
            for (int64_t i : stage.chunk(c).layer_indices()) built[static_cast<size_t>(i)] += 1.0f;
            built[static_cast<size_t>(layers)] += stage.chunk(c).has_embedding();
            built[static_cast<size_t>(layers + 1)] += stage.chunk(c).has_head();
          }
          Tensor counts = Tensor::from_vector(built, {layers + 2});
          world_.all_reduce(counts, ReduceOp::Sum);
          EXPECT_EQ(counts.to_vector<float>(), std::vector<float>(built.size(), 1.0f)) << layout->describe();
        }
  EXPECT_GE(layouts, 20);
}

TEST_F(PipelineModelTest, BadLayoutsAndMisuseAreRefused) {
  const int pp = world_.size();
  const GptPipelineStageOptions shape{.micro_batch_size = kMicroBatchSize, .seq_length = kSeq};
  expect_rejected([&] { GptPipelineStage(llama_config(), kSeed, PipelineLayout(layout_options(8, pp)), 0, shape); },
                  "the pipeline layout places 8 layers but model.num_layers is 4");
  const std::string one_layer = "Et" + std::string(size_t(pp) - 1, '|') + "L";  // pp stages, 1 layer
  expect_rejected([&] { PipelineLayout(layout_options(4, pp, 1, one_layer)); },
                  "places 1 transformer layers (t) but num_layers is 4; every layer must be placed exactly once");
  expect_rejected([&] { PipelineLayout(layout_options(3, 2)); }, "num_layers 3 is not divisible");
  expect_rejected([&] { GptPipelineStage(llama_config(), kSeed, PipelineLayout(layout_options(4, pp)), pp, shape); },
                  "stage " + std::to_string(pp) + " is outside pipeline_model_parallel_size");

  // The tied table's holders need the embedding group, and one of exactly two ranks.
  PipelineLayout layout(layout_options(4, pp));
  GptPipelineStage stage(gpt_config(), kSeed, layout, world_.rank(), shape);
  const bool holder = world_.rank() == 0 || world_.rank() == pp - 1;
  if (holder) {
    expect_rejected([&] { stage.finalize_grads(nullptr); }, "pass the embedding group");
    if (pp > 2)
      expect_rejected([&] { stage.finalize_grads(&world_); }, "needs the embedding group of the first and last");
  } else {
    EXPECT_NO_THROW(stage.finalize_grads(nullptr));  // middle stages hold no copy
  }
  if (world_.rank() == 0) {
    expect_rejected([&] { stage.forward(0, 0, Tensor()); }, "micro-batch 0 requested but set_micro_batches gave 0");
  } else {
    expect_rejected([&] { stage.forward(0, 0, Tensor()); },
                    "expects the previous stage's hidden states [2, 8, 32], got []");
  }
  LmBatch wrong = micro_batches_of(full_batch(gpt_config()))[0];
  wrong.tokens = wrong.tokens.narrow(1, 0, 4).contiguous();
  expect_rejected([&] { stage.set_micro_batches({wrong}); }, "micro-batch 0 has tokens [2, 4]");
  if (world_.rank() > 0) {
    stage.set_micro_batches(micro_batches_of(full_batch(gpt_config())));
    expect_rejected(
        [&] {
          stage.forward(0, 0, Tensor::zeros({kMicroBatchSize, kSeq, 8}));
        },
        "expects the previous stage's hidden states [2, 8, 32], got [2, 8, 8]");
  }
  // No rank entered a collective above: the group still agrees on the next one.
  Tensor one = Tensor::ones({1});
  world_.all_reduce(one, ReduceOp::Sum);
  EXPECT_EQ(one.item(), world_.size());
}

}  // namespace
}  // namespace tessera
