// Packing under tensor parallelism, as real ranks (np 2 and 4): a packed batch (2 rows of 2-3
// conversations each, LmBatch::document_lengths) through the GPT and Llama flavours at
// tp = world, with sequence parallelism off and on, gives the single-rank model's loss and
// gradients on the same packed batch (relative error <= 1e-5 in f32; the tp shards gathered back
// by Megatron's layout). Attention is head-sharded, so each rank runs the documents of the
// whole sequence (gathered by the QKV projection under sequence parallelism); learned
// positions restart per document on each rank's sequence shard. The single-rank packed model
// itself is checked against conversations run one by one in tests/models/packed_sequences_test.
#include <gtest/gtest.h>
#include <mpi.h>

#include <map>
#include <string>
#include <vector>

#include "core/ops/ops.h"
#include "models/gpt_model.h"
#include "parallel/mpi_communicator.h"
#include "parallel/process_groups.h"
#include "tests/mpi/parallel_test_helpers.h"

namespace tessera {
namespace {

using testing::gather_shards;
using testing::relative_error;
using testing::Split;
using testing::split_of;

constexpr double kTolerance = 1e-5;
constexpr uint64_t kSeed = 404;
constexpr int64_t kSeq = 12;  // divides by every tp size the test runs (2, 4)

// Row 0: documents of 5, 4 and 3 tokens (the last one padding, loss mask 0); row 1: 3, 6 and 3.
LmBatch packed_batch(const TransformerConfig& c) {
  std::vector<int64_t> tokens, labels;
  std::vector<float> mask;
  for (int64_t i = 0; i < 2 * kSeq; ++i) {
    tokens.push_back((i * 37 + 11) % c.vocab_size);
    labels.push_back(i % 7 == 4 ? -100 : (i * 53 + 7) % c.vocab_size);
    mask.push_back(i >= 9 && i < kSeq ? 0.0f : 1.0f);
  }
  LmBatch batch{Tensor::from_vector(tokens, {2, kSeq}), Tensor::from_vector(labels, {2, kSeq}),
                Tensor::from_vector(mask, {2, kSeq})};
  batch.document_lengths = {{5, 4, 3}, {3, 6, 3}};
  return batch;
}

struct Result {
  double loss = 0;
  std::map<std::string, Tensor> grads;
};

TransformerConfig with_large_weights(TransformerConfig config) {
  // Attention far from uniform: mixing documents would move the loss well beyond the tolerance.
  config.init_method_std = 0.2;
  return config;
}

Result single_rank(const TransformerConfig& config, const LmBatch& batch) {
  GptModel model(config, kSeed);
  Tensor loss = model.loss(batch);
  loss.backward();
  Result result{loss.item(), {}};
  for (const auto& [name, p] : model.named_parameters()) result.grads[name] = p.grad().clone();
  return result;
}

void check(const TransformerConfig& config, bool sequence_parallel, Communicator& world) {
  SCOPED_TRACE(config.name + (sequence_parallel ? ", sequence parallel" : ""));
  const LmBatch batch = packed_batch(config);
  const Result expected = single_rank(config, batch);
  ProcessGroups groups(world, {.tp = world.size()});
  Communicator& tp = groups.tp();
  GptModel model(config, kSeed, {}, {.tp = &tp, .sequence_parallel = sequence_parallel});
  Tensor loss = model.loss(batch);
  loss.backward();
  model.finalize_tensor_parallel_grads();
  EXPECT_LE(std::abs(loss.item() - expected.loss), kTolerance * std::abs(expected.loss));
  for (const auto& [name, p] : model.named_parameters()) {
    const Split split = split_of(name, config);
    Tensor grad = split.sharded ? gather_shards(p.grad(), tp, split) : p.grad();
    const Tensor& reference = expected.grads.at(name);
    if (split.vocabulary) {  // the real rows; the padding differs per tp size
      grad = grad.narrow(0, 0, config.vocab_size);
      EXPECT_LE(relative_error(grad, reference.narrow(0, 0, config.vocab_size)), kTolerance) << name;
    } else {
      EXPECT_LE(relative_error(grad, reference), kTolerance) << name;
    }
  }
  // The control: the same batch unpacked gives another loss (the documents do matter here).
  LmBatch unpacked = batch;
  unpacked.document_lengths.clear();
  EXPECT_GT(std::abs(model.loss(unpacked).item() - expected.loss), 100 * kTolerance * std::abs(expected.loss));
}

TEST(PackedTensorParallel, GptMatchesSingleRank) {
  MpiCommunicator world(MPI_COMM_WORLD, "world");
  const TransformerConfig config = with_large_weights(testing::tiny_gpt_config("packed-tp-gpt", 2));
  for (bool sequence_parallel : {false, true}) check(config, sequence_parallel, world);
}

TEST(PackedTensorParallel, LlamaMatchesSingleRank) {
  MpiCommunicator world(MPI_COMM_WORLD, "world");
  const TransformerConfig config = with_large_weights(testing::tiny_llama_config("packed-tp-llama", 2));
  for (bool sequence_parallel : {false, true}) check(config, sequence_parallel, world);
}

}  // namespace
}  // namespace tessera
