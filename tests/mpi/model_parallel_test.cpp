// Tensor-, sequence- and data-parallel GPT and Llama against the single-rank GptModel, run as
// real ranks (np 2 and 4). Every layout that fits the world is tried: tp = world, tp x dp, and
// dp = world; with tp > 1 sequence parallelism off and on (and once with recomputation). Each
// rank builds the single-rank model from the same seed and trains it on the whole batch; the
// parallel model trains on its dp rows (gradients summed over dp by a plain all-reduce, the
// replicated ones over tp by finalize_tensor_parallel_grads). Checked, relative error <= 1e-5
// in f32: the first step's loss and every parameter's gradient, the tp shards gathered back
// into the full tensor by Megatron's layout (the padded vocabulary rows must stay zero), and
// the losses of 10 AdamW steps. The loss is bitwise the same on every tp rank, gradients land
// in the buffers installed with set_grad, and parameter_is_tensor_parallel_sharded agrees with
// the layout. Also: dropout without sequence parallelism draws the single-rank masks, KV-cache
// decoding and full logits match, a tp group of one rank is the single-rank model, and layouts
// that do not fit the model are refused in one line.
#include <gtest/gtest.h>
#include <mpi.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "models/gpt_model.h"
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
constexpr uint64_t kSeed = 2024;
constexpr int64_t kBatch = 4, kSeq = 8;  // kBatch divides by every dp size, kSeq by every tp size
constexpr int kSteps = 10;
const AdamWOptions kAdamW{.lr = 1e-2, .weight_decay = 0.1};

// The two flavours of parallel_test_helpers.h, 2 layers.
TransformerConfig gpt_config() { return testing::tiny_gpt_config("tp-gpt", 2); }

TransformerConfig llama_config() { return testing::tiny_llama_config("tp-llama", 2); }

// The same batch on every rank: tokens, labels with ignored positions, a fractional mask.
LmBatch full_batch(const TransformerConfig& c) {
  std::vector<int64_t> tokens, labels;
  std::vector<float> mask;
  for (int64_t i = 0; i < kBatch * kSeq; ++i) {
    tokens.push_back((i * 37 + 11) % c.vocab_size);
    labels.push_back(i % 9 == 4 ? -100 : (i * 53 + 7) % c.vocab_size);
    mask.push_back(i % 6 == 1 ? 0.5f : 1.0f);
  }
  return {Tensor::from_vector(tokens, {kBatch, kSeq}), Tensor::from_vector(labels, {kBatch, kSeq}),
          Tensor::from_vector(mask, {kBatch, kSeq})};
}

LmBatch rows_of(const LmBatch& batch, int64_t start, int64_t count) {
  return {batch.tokens.narrow(0, start, count).contiguous(), batch.labels.narrow(0, start, count).contiguous(),
          batch.loss_mask.narrow(0, start, count).contiguous()};
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


// Every gathered gradient against the single-rank one; vocabulary tables on their real rows,
// the padded rows (more of them under tp) zero on both sides.
void expect_gradients_match(const GptModel& model, const Reference& reference, Communicator* tp) {
  const TransformerConfig& config = model.config();
  std::vector<bool> sharded = model.parameter_is_tensor_parallel_sharded();
  auto named = model.named_parameters();
  ASSERT_EQ(sharded.size(), named.size());
  for (size_t i = 0; i < named.size(); ++i) {
    const auto& [name, p] = named[i];
    Split split = split_of(name, config);
    EXPECT_EQ(sharded[i], split.sharded && tp != nullptr) << name;
    Tensor grad = split.sharded && tp != nullptr ? gather_shards(p.grad(), *tp, split) : p.grad();
    const Tensor& expected = reference.grads.at(name);
    if (split.vocabulary) {
      const int64_t v = config.vocab_size;
      EXPECT_LE(relative_error(grad.narrow(0, 0, v), expected.narrow(0, 0, v)), kTolerance) << name;
      for (const Tensor& padding : {grad.narrow(0, v, grad.size(0) - v), expected.narrow(0, v, expected.size(0) - v)})
        EXPECT_EQ(abs(padding).to_vector<float>(), std::vector<float>(static_cast<size_t>(padding.numel()), 0.0f))
            << name << " padded rows";
    } else {
      EXPECT_LE(relative_error(grad, expected), kTolerance) << name;
    }
  }
}

// Sum of every gradient over `group` in one all-reduce (the test's stand-in for DDP).
void all_reduce_grads(const GptModel& model, Communicator& group) {
  NoGradGuard no_grad;
  std::vector<Tensor> grads, flat;
  for (const Tensor& p : model.parameters()) {
    grads.push_back(p.grad());
    flat.push_back(p.grad().reshape({p.numel()}));
  }
  Tensor buffer = cat(flat, 0);
  group.all_reduce(buffer, ReduceOp::Sum);
  int64_t offset = 0;
  for (Tensor& grad : grads) {
    grad.copy_(buffer.narrow(0, offset, grad.numel()).view(grad.shape()));
    offset += grad.numel();
  }
}

struct Layout {
  int tp = 1;
  int dp = 1;
  bool sequence_parallel = false;
  bool recompute = false;
};

std::string describe(const Layout& layout) {
  return "tp " + std::to_string(layout.tp) + " x dp " + std::to_string(layout.dp) +
         (layout.sequence_parallel ? ", sequence parallel" : "") + (layout.recompute ? ", recompute" : "");
}

// tp = world, tp x dp and dp = world; sequence parallelism off and on where tp > 1; the
// widest tp once more with recomputation.
std::vector<Layout> layouts_for(int world) {
  std::vector<Layout> layouts;
  for (int tp = world; tp >= 1; tp /= 2) {
    layouts.push_back({tp, world / tp, false});
    if (tp > 1) layouts.push_back({tp, world / tp, true});
  }
  layouts.push_back({world, 1, true, true});
  return layouts;
}

void check_layout(const TransformerConfig& config, const Reference& reference, const Layout& layout,
                  Communicator& world) {
  SCOPED_TRACE(config.name + ", " + describe(layout));
  ProcessGroups groups(world, {.tp = layout.tp, .dp = layout.dp});
  Communicator* tp = layout.tp > 1 ? &groups.tp() : nullptr;
  GptModel model(config, kSeed, {}, {.tp = tp, .sequence_parallel = layout.sequence_parallel});
  model.set_recompute(layout.recompute);
  // Megatron-style main-grad buffers: backward and the reductions must fill them in place.
  std::vector<const void*> buffers;
  for (const Tensor& p : model.parameters()) {
    p.set_grad(Tensor::zeros(p.shape()));
    buffers.push_back(p.grad().data_ptr());
  }
  AdamW optimizer(model.parameters(), kAdamW);
  LmBatch batch = full_batch(config);
  const int64_t rows = kBatch / layout.dp;
  LmBatch local = rows_of(batch, groups.coords().dp * rows, rows);
  const double tokens = counted_tokens(batch);

  for (int step = 0; step < kSteps; ++step) {
    model.zero_grad();
    // Each dp rank's share of the global mean: its tokens' sum over the global token count.
    Tensor loss = scale(model.loss(local, LossReduction::Sum), 1.0 / tokens);
    loss.backward();
    all_reduce_grads(model, groups.dp());
    model.finalize_tensor_parallel_grads();
    Tensor total = loss.detach().clone();
    groups.dp().all_reduce(total, ReduceOp::Sum);
    Tensor expected = Tensor::full(total.shape(), reference.losses[static_cast<size_t>(step)]);
    EXPECT_LE(relative_error(total, expected), kTolerance) << "step " << step;
    if (step == 0) {
      Tensor same = loss.detach().clone().reshape({1});
      Tensor all = Tensor::empty({groups.tp().size()});
      groups.tp().all_gather(same, all);
      for (float value : all.to_vector<float>()) EXPECT_EQ(value, same.item()) << "loss differs across tp ranks";
      expect_gradients_match(model, reference, tp);
      std::vector<Tensor> parameters = model.parameters();
      for (size_t i = 0; i < parameters.size(); ++i)
        EXPECT_EQ(parameters[i].grad().data_ptr(), buffers[i]) << "gradient left its installed buffer";
    }
    optimizer.step();
  }
}

class ModelParallelTest : public ::testing::Test {
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

std::unique_ptr<Reference> ModelParallelTest::gpt_reference_, ModelParallelTest::llama_reference_;

TEST_F(ModelParallelTest, GptMatchesSingleRankInEveryLayout) {
  for (const Layout& layout : layouts_for(world_.size())) check_layout(gpt_config(), *gpt_reference_, layout, world_);
}

TEST_F(ModelParallelTest, LlamaMatchesSingleRankInEveryLayout) {
  for (const Layout& layout : layouts_for(world_.size()))
    check_layout(llama_config(), *llama_reference_, layout, world_);
}

TEST_F(ModelParallelTest, DropoutWithoutSequenceParallelismDrawsTheSingleRankMasks) {
  // Replicated activations use the default stream, which is the single-rank model's.
  TransformerConfig config = gpt_config();
  config.hidden_dropout = 0.2;
  check_layout(config, single_rank_run(config), {.tp = world_.size()}, world_);
}

TEST_F(ModelParallelTest, DecodingAndFullLogitsMatchSingleRank) {
  TransformerConfig config = llama_config();
  ProcessGroups groups(world_, {.tp = world_.size()});
  GptModel reference(config, kSeed), parallel(config, kSeed, {}, {.tp = &groups.tp()});
  GptModel sequence_parallel(config, kSeed, {}, {.tp = &groups.tp(), .sequence_parallel = true});
  for (GptModel* model : {&reference, &parallel, &sequence_parallel}) model->eval();
  LmBatch batch = full_batch(config);
  Tensor expected = reference.forward(batch.tokens);
  EXPECT_LE(relative_error(parallel.forward(batch.tokens), expected), kTolerance) << "full logits";
  EXPECT_LE(relative_error(sequence_parallel.forward(batch.tokens), expected), kTolerance) << "full logits, sp";

  KvCache reference_cache = reference.new_kv_cache(kBatch, kSeq), parallel_cache = parallel.new_kv_cache(kBatch, kSeq);
  for (int64_t start : {0, 4, 5}) {  // a prompt of 4 tokens, then one token at a time
    const int64_t length = start == 0 ? 4 : 1;
    Tensor tokens = batch.tokens.narrow(1, start, length).contiguous();
    EXPECT_LE(relative_error(parallel.forward(tokens, parallel_cache), reference.forward(tokens, reference_cache)),
              kTolerance)
        << "decoding at position " << start;
  }
  KvCache cache = sequence_parallel.new_kv_cache(kBatch, kSeq);
  expect_rejected([&] { sequence_parallel.forward(batch.tokens, cache); },
                  "decoding with a KV cache does not support sequence_parallel");
}

TEST_F(ModelParallelTest, ATpGroupOfOneRankBuildsTheSingleRankModel) {
  ProcessGroups groups(world_, {.tp = 1, .dp = world_.size()});
  TransformerConfig config = gpt_config();
  GptModel single(config, kSeed), model(config, kSeed, {}, {.tp = &groups.tp(), .sequence_parallel = true});
  EXPECT_EQ(model.parallelism().tp, nullptr);
  EXPECT_FALSE(model.parallelism().sequence_parallel);
  LmBatch batch = full_batch(config);
  EXPECT_EQ(model.loss(batch).item(), single.loss(batch).item());
}

TEST_F(ModelParallelTest, LayoutsThatDoNotFitTheModelAreRefused) {
  ProcessGroups groups(world_, {.tp = world_.size()});
  TransformerConfig one_group = llama_config();
  one_group.num_query_groups = 1;
  expect_rejected([&] { GptModel(one_group, kSeed, {}, {.tp = &groups.tp()}); },
                  "model.num_query_groups 1 is not divisible by tensor_model_parallel_size " +
                      std::to_string(world_.size()));
  expect_rejected([&] { GptModel(gpt_config(), kSeed, {}, {.sequence_parallel = true}); },
                  "sequence_parallel needs a tensor-parallel group");
  GptModel model(gpt_config(), kSeed, {}, {.tp = &groups.tp(), .sequence_parallel = true});
  LmBatch odd = full_batch(gpt_config());
  odd = {odd.tokens.narrow(1, 0, 3).contiguous(), odd.labels.narrow(1, 0, 3).contiguous(), Tensor()};
  expect_rejected([&] { model.loss(odd); }, "sequence length 3 does not divide by tensor_model_parallel_size");
  // No rank entered a collective above: the group still agrees on the next one.
  Tensor one = Tensor::ones({1});
  world_.all_reduce(one, ReduceOp::Sum);
  EXPECT_EQ(one.item(), world_.size());
}

}  // namespace
}  // namespace tessera
