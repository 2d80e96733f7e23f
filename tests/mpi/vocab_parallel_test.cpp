// Vocabulary-parallel embedding and cross-entropy with the world as the tp group (tp = 2 and 4),
// against the single-rank Embedding and cross_entropy computed on every rank from the same seed
// and data. The embedding: output (whole, or this rank's sequence shard with sequence
// parallelism) and this rank's rows of the weight gradient. The cross-entropy: loss for every
// reduction, with ignored targets and a fractional loss mask, and this rank's columns of the
// logits gradient; once with padding inside the last shard and once with whole shards of
// padding; the loss is bitwise the same on every rank. Relative error <= 1e-5. Out-of-range ids
// and targets are refused with one line.
#include <gtest/gtest.h>
#include <mpi.h>

#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/nn/layers.h"
#include "core/ops/ops.h"
#include "parallel/mpi_communicator.h"
#include "parallel/vocab_parallel.h"
#include "tests/mpi/parallel_test_helpers.h"

namespace tessera {
namespace {

using testing::expect_rejected;
using testing::random_tensor;
using testing::relative_error;

constexpr double kTolerance = 1e-5;
constexpr int64_t kPaddedVocab = 24;  // divides by 2 and 4
constexpr int64_t kBatch = 2, kSeq = 8, kDim = 5;

class VocabParallelTest : public ::testing::Test {
 protected:
  MpiCommunicator tp_{MPI_COMM_WORLD, "tp"};
  int rank_ = tp_.rank();
  int size_ = tp_.size();
};

// Ids [kBatch, kSeq] covering every shard, the same on every rank.
Tensor token_ids(int64_t vocab) {
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < kBatch * kSeq; ++i) ids.push_back((i * 7 + 3) % vocab);
  return Tensor::from_vector(ids, {kBatch, kSeq});
}

void check_embedding(Communicator& tp, bool sequence_parallel) {
  const int64_t rows = kPaddedVocab / tp.size(), seq_shard = kSeq / tp.size();
  Generator reference_init(5), parallel_init(5), data(17);
  Embedding reference(kPaddedVocab, kDim, reference_init);
  VocabParallelEmbedding parallel(kPaddedVocab, kDim, &tp, parallel_init,
                                  {.sequence_parallel = sequence_parallel, .sequence_dim = 1});
  ASSERT_EQ(parallel.weight().shape(), (Shape{rows, kDim}));
  EXPECT_EQ(parallel.vocab_start(), tp.rank() * rows);
  EXPECT_EQ(relative_error(parallel.weight(), reference.weight().narrow(0, tp.rank() * rows, rows)), 0.0);

  Tensor ids = token_ids(kPaddedVocab);
  Tensor dL_dy = random_tensor({kBatch, kSeq, kDim}, data);
  Tensor y_reference = reference.forward(ids);
  y_reference.backward(dL_dy);
  auto local = [&](const Tensor& full) {
    return sequence_parallel ? full.narrow(1, tp.rank() * seq_shard, seq_shard).contiguous() : full;
  };
  Tensor y = parallel.forward(ids);
  y.backward(local(dL_dy));
  EXPECT_LE(relative_error(y, local(y_reference)), kTolerance) << "output";
  EXPECT_LE(relative_error(parallel.weight().grad(), reference.weight().grad().narrow(0, tp.rank() * rows, rows)),
            kTolerance)
      << "weight gradient";
}

TEST_F(VocabParallelTest, EmbeddingMatchesSingleRank) { check_embedding(tp_, false); }

TEST_F(VocabParallelTest, SequenceParallelEmbeddingGivesItsSequenceShard) { check_embedding(tp_, true); }

TEST_F(VocabParallelTest, EmbeddingWithoutAGroupIsEmbeddingBitForBit) {
  Generator reference_init(5), layer_init(5);
  Embedding reference(kPaddedVocab, kDim, reference_init);
  VocabParallelEmbedding layer(kPaddedVocab, kDim, nullptr, layer_init);
  Tensor ids = token_ids(kPaddedVocab);
  EXPECT_EQ(layer.forward(ids).to_vector<float>(), reference.forward(ids).to_vector<float>());
}

// Logits [kBatch, kSeq, kPaddedVocab] (the same on every rank), targets with ignored positions,
// a fractional loss mask; the single-rank cross_entropy over the real columns is the reference.
void check_cross_entropy(Communicator& tp, int64_t vocab, LossReduction reduction) {
  const int64_t shard = kPaddedVocab / tp.size(), start = tp.rank() * shard;
  Generator data(23);
  Tensor logits = scale(random_tensor({kBatch, kSeq, kPaddedVocab}, data), 4.0);
  std::vector<int64_t> targets;
  std::vector<float> mask;
  for (int64_t i = 0; i < kBatch * kSeq; ++i) {
    targets.push_back(i % 5 == 2 ? -100 : (i * 11 + 1) % vocab);
    mask.push_back(i % 7 == 3 ? 0.0f : (i % 3 == 0 ? 0.5f : 1.0f));
  }
  CrossEntropyOptions options;
  options.loss_mask = Tensor::from_vector(mask, {kBatch, kSeq});
  options.reduction = reduction;
  Tensor target_tensor = Tensor::from_vector(targets, {kBatch, kSeq});
  Generator grads(29);
  Tensor dL_dloss = reduction == LossReduction::None ? random_tensor({kBatch, kSeq}, grads) : Tensor();

  Tensor reference_logits = logits.clone().set_requires_grad(true);
  Tensor reference = cross_entropy(reference_logits.narrow(-1, 0, vocab), target_tensor, options);
  reference.backward(dL_dloss);
  Tensor shard_logits = logits.narrow(-1, start, shard).contiguous().set_requires_grad(true);
  Tensor loss = vocab_parallel_cross_entropy(shard_logits, target_tensor, vocab, tp, options);
  loss.backward(dL_dloss);

  EXPECT_LE(relative_error(loss, reference), kTolerance) << "loss";
  // Padded columns get no gradient on either side.
  EXPECT_LE(relative_error(shard_logits.grad(), reference_logits.grad().narrow(-1, start, shard)), kTolerance)
      << "logits gradient";
  // Every rank computed bitwise the same loss.
  Tensor mine = loss.detach().contiguous().reshape({1, loss.numel()});
  Tensor all = Tensor::empty({tp.size(), loss.numel()});
  tp.all_gather(mine, all);
  for (int q = 0; q < tp.size(); ++q)
    EXPECT_EQ(all.narrow(0, q, 1).to_vector<float>(), mine.to_vector<float>()) << "rank " << q;
}

TEST_F(VocabParallelTest, CrossEntropyMatchesSingleRankForEveryReduction) {
  for (LossReduction reduction : {LossReduction::Mean, LossReduction::Sum, LossReduction::None}) {
    SCOPED_TRACE(static_cast<int>(reduction));
    check_cross_entropy(tp_, kPaddedVocab - 3, reduction);  // the last shard ends in padding
  }
}

TEST_F(VocabParallelTest, CrossEntropyWithWholeShardsOfPadding) {
  // 5 real columns: rank 0 holds all of them, the other ranks only padding.
  check_cross_entropy(tp_, 5, LossReduction::Mean);
}

TEST_F(VocabParallelTest, CrossEntropyOfAFullyMaskedBatchIsZero) {
  const int64_t shard = kPaddedVocab / size_;
  Tensor logits = Tensor::ones({kBatch, kSeq, shard}).set_requires_grad(true);
  CrossEntropyOptions options;
  options.loss_mask = Tensor::zeros({kBatch, kSeq});
  Tensor loss = vocab_parallel_cross_entropy(logits, token_ids(10), 10, tp_, options);
  loss.backward();
  EXPECT_EQ(loss.item(), 0.0);
  for (float g : logits.grad().to_vector<float>()) ASSERT_EQ(g, 0.0f);
}

TEST_F(VocabParallelTest, OutOfRangeIdsAndTargetsAreRefused) {
  Generator init(1);
  VocabParallelEmbedding embedding(kPaddedVocab, kDim, &tp_, init);
  expect_rejected([&] { embedding.forward(Tensor::from_vector(std::vector<int64_t>{3, kPaddedVocab}, {1, 2})); },
                  "id 24 at flat position 1 is outside the table's 24 rows");
  const int64_t shard = kPaddedVocab / size_;
  Tensor logits = Tensor::zeros({1, 2, shard});
  expect_rejected(
      [&] { vocab_parallel_cross_entropy(logits, Tensor::from_vector(std::vector<int64_t>{0, 20}, {1, 2}), 20, tp_); },
      "target 20 at flat position 1 is outside the vocabulary [0, 20)");
  Tensor two_targets = Tensor::from_vector(std::vector<int64_t>{0, 1}, {1, 2});
  expect_rejected([&] { vocab_parallel_cross_entropy(logits, two_targets, kPaddedVocab + 1, tp_); },
                  "vocab_size 25 must be in [1, 24]");
  expect_rejected([&] { VocabParallelEmbedding(2 * size_ + 1, kDim, &tp_, init); },
                  "rows do not divide by the tensor-parallel size");
  // No rank entered a collective above: the group still agrees on the next one.
  Tensor one = Tensor::ones({1});
  tp_.all_reduce(one, ReduceOp::Sum);
  EXPECT_EQ(one.item(), size_);
}

}  // namespace
}  // namespace tessera
