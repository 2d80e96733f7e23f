// LoRA under tensor parallelism (tp = world, np 2 and 4), GPT and Llama flavours, sequence
// parallelism off and on, against the single-rank LoRA model every rank builds from the same
// seed. Adapter splits are NeMo's: column-parallel targets (linear_qkv, linear_fc1, SwiGLU's
// gate/up blocks split separately) split B's rows and replicate A, row-parallel ones
// (linear_proj, linear_fc2) split A's columns and replicate B. Checked: every rank's A is its
// slice of the single-rank A as drawn (no copying); with B set to the same random values, the
// loss and each adapter gradient (shards gathered, replicated ones after
// finalize_tensor_parallel_grads) match within 1e-5, the base gets no gradient, and
// parameter_is_tensor_parallel_sharded marks the split factors; the losses of 4 AdamW steps
// on trainable_parameters() match; afterwards the logits match (1e-4: Adam), with adapters off they are
// the plain single-rank model's, and merged (each rank into its own shards) they still match.
// With adapter dropout on the column-parallel targets the masks are the single-rank ones.
#include <gtest/gtest.h>
#include <mpi.h>

#include <map>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "core/ops/random_ops.h"
#include "models/gpt_model.h"
#include "models/lora.h"
#include "optim/adamw.h"
#include "parallel/mpi_communicator.h"
#include "tests/mpi/parallel_test_helpers.h"

namespace tessera {
namespace {

using testing::ends_with;
using testing::gather_shards;
using testing::relative_error;
using testing::Split;

constexpr double kTolerance = 1e-5;
// After AdamW steps: Adam's first steps move every element by about lr whatever its gradient's
// size, so the reduction-order rounding of tiny gradients shows in the trained adapters.
constexpr double kTrainedTolerance = 1e-4;
constexpr uint64_t kSeed = 77;
constexpr int64_t kBatch = 2, kSeq = 8;  // kSeq divides by every tp size (sequence parallelism)
constexpr int kSteps = 4;

TransformerConfig lora_config(bool llama) {
  TransformerConfig c = llama ? testing::tiny_llama_config("lora-llama", 2) : testing::tiny_gpt_config("lora-gpt", 2);
  c.lora.rank = 4;
  c.lora.alpha = 8.0;
  return c;
}

// How an adapter factor is split over tp (lora.h); base parameters are not compared here.
Split adapter_split(const std::string& name, const TransformerConfig& config) {
  if (ends_with(name, "linear_qkv.adapter.linear_out.weight")) return {.sharded = true};
  if (ends_with(name, "linear_fc1.adapter.linear_out.weight"))
    return {.sharded = true, .blocks = config.activation == Activation::SwiGLU ? 2 : 1};
  if (ends_with(name, "linear_proj.adapter.linear_in.weight") || ends_with(name, "linear_fc2.adapter.linear_in.weight"))
    return {.sharded = true, .dim = 1};
  return {};
}

// This rank's shard of a full tensor under `split` (the inverse of gather_shards).
Tensor shard_of(const Tensor& full, const Split& split, int rank, int size) {
  if (!split.sharded) return full;
  std::vector<Tensor> pieces;
  for (const Tensor& block : chunk(full, split.blocks, split.dim)) {
    const int64_t length = block.size(split.dim) / size;
    pieces.push_back(block.narrow(split.dim, rank * length, length));
  }
  return cat(pieces, split.dim).contiguous();
}

LmBatch batch_of(const TransformerConfig& c) {
  std::vector<int64_t> tokens, labels;
  for (int64_t i = 0; i < kBatch * kSeq; ++i) {
    tokens.push_back((i * 37 + 11) % c.vocab_size);
    labels.push_back(i % 7 == 3 ? -100 : (tokens.back() * 3 + 5) % c.vocab_size);
  }
  return {Tensor::from_vector(tokens, {kBatch, kSeq}), Tensor::from_vector(labels, {kBatch, kSeq}), Tensor()};
}

class LoraTensorParallelTest : public ::testing::Test {
 protected:
  void run(const TransformerConfig& config, bool sequence_parallel) {
    SCOPED_TRACE(config.name + (sequence_parallel ? ", sequence parallel" : ""));
    GptModel single(config, kSeed);
    GptModel parallel(config, kSeed, {}, ModelParallelism{.tp = &tp_, .sequence_parallel = sequence_parallel});
    // A as drawn is the slice of the single-rank A; B gets the same random values on both sides.
    std::map<std::string, Tensor> single_adapters;
    {
      NoGradGuard no_grad;
      Generator generator(3);
      for (auto& [name, p] : lora_state_dict(single)) {
        if (ends_with(name, "linear_out.weight")) uniform_(p, generator, -0.5, 0.5);
        single_adapters[name] = p;
      }
      for (auto& [name, p] : lora_state_dict(parallel)) {
        const Tensor expected = shard_of(single_adapters.at(name), adapter_split(name, config), rank_, size_);
        if (ends_with(name, "linear_in.weight")) {
          EXPECT_EQ(p.to_vector<float>(), expected.to_vector<float>()) << name;
        }
        p.copy_(expected);
      }
    }
    const std::vector<bool> sharded = parallel.parameter_is_tensor_parallel_sharded();
    const StateDict named = parallel.named_parameters();
    for (size_t i = 0; i < named.size(); ++i) {
      if (named[i].first.find(".adapter.") != std::string::npos) {
        EXPECT_EQ(sharded[i], adapter_split(named[i].first, config).sharded) << named[i].first;
      }
    }

    AdamW single_optimizer(trainable_parameters(single), {.lr = 1e-2});
    AdamW parallel_optimizer(trainable_parameters(parallel), {.lr = 1e-2});
    const LmBatch batch = batch_of(config);
    for (int step = 0; step < kSteps; ++step) {
      single.zero_grad();
      parallel.zero_grad();
      Tensor expected = single.loss(batch), got = parallel.loss(batch);
      expected.backward();
      got.backward();
      parallel.finalize_tensor_parallel_grads();
      EXPECT_LE(relative_error(got, expected), kTolerance) << "step " << step;
      if (step == 0) expect_adapter_gradients_match(single, parallel);
      single_optimizer.step();
      parallel_optimizer.step();
    }

    NoGradGuard no_grad;
    single.eval();
    parallel.eval();
    TransformerConfig plain_config = config;
    plain_config.lora.rank = 0;
    GptModel base(plain_config, kSeed);
    const Tensor tokens = batch.tokens;
    const Tensor adapted = single.forward(tokens);
    EXPECT_LE(relative_error(parallel.forward(tokens), adapted), kTrainedTolerance);
    {
      LoraDisabledScope reference(parallel);
      EXPECT_LE(relative_error(parallel.forward(tokens), base.forward(tokens)), kTolerance);
    }
    merge_lora(parallel);
    EXPECT_LE(relative_error(parallel.forward(tokens), adapted), kTrainedTolerance);
  }

  void expect_adapter_gradients_match(const GptModel& single, const GptModel& parallel) {
    std::map<std::string, Tensor> expected;
    for (const auto& [name, p] : single.named_parameters()) expected[name] = p.grad();
    for (const auto& [name, p] : parallel.named_parameters()) {
      if (name.find(".adapter.") == std::string::npos) {
        EXPECT_FALSE(p.grad().defined()) << name << " is frozen";
        continue;
      }
      const Split split = adapter_split(name, parallel.config());
      Tensor grad = split.sharded ? gather_shards(p.grad(), tp_, split) : p.grad();
      EXPECT_LE(relative_error(grad, expected.at(name)), kTolerance) << name;
    }
  }

  MpiCommunicator tp_{MPI_COMM_WORLD, "tp"};
  int rank_ = tp_.rank();
  int size_ = tp_.size();
};

TEST_F(LoraTensorParallelTest, GptMatchesSingleRank) { run(lora_config(false), false); }
TEST_F(LoraTensorParallelTest, LlamaMatchesSingleRank) { run(lora_config(true), false); }
TEST_F(LoraTensorParallelTest, GptWithSequenceParallelismMatchesSingleRank) { run(lora_config(false), true); }
TEST_F(LoraTensorParallelTest, LlamaWithSequenceParallelismMatchesSingleRank) { run(lora_config(true), true); }

// Column-parallel adapters see the replicated input and draw their dropout masks from the
// default stream: the single-rank masks.
TEST_F(LoraTensorParallelTest, ColumnAdapterDropoutDrawsTheSingleRankMasks) {
  TransformerConfig config = lora_config(true);
  config.lora.dropout = 0.3;
  config.lora.targets = {"linear_qkv", "linear_fc1"};
  run(config, false);
}

}  // namespace
}  // namespace tessera
