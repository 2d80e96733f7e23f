// Tensor- and sequence-parallel mappings and linear layers, with the world as the tp group
// (tp = 2 and 4). Mappings: forward and backward against closed-form values (rank r's inputs
// and output gradients are small integers from a formula, exact in f32, so comparisons are
// exact), the sequence-parallel ones along dim 0 and along dim 1. Layers: a Column(gelu)->Row
// MLP, wired four ways (split, gather/scatter, sequence parallel on [T, B, C] and on [B, T, C]),
// against the single-rank Linear->gelu->Linear computed on every rank from the same seed:
// output, input gradient and every parameter gradient (each rank's shard against the matching
// slice of the single-rank gradient), relative error <= 1e-5. The block-split column weight
// (SwiGLU's [gate; up]) holds the right rows; without a group the layers are Linear bit for
// bit. Bad sizes and contradictory options are rejected with a one-line reason before any
// communication.
#include <gtest/gtest.h>
#include <mpi.h>

#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/check.h"
#include "core/nn/layers.h"
#include "core/ops/ops.h"
#include "parallel/mpi_communicator.h"
#include "parallel/tensor_parallel_linear.h"
#include "parallel/tp_mappings.h"
#include "tests/mpi/parallel_test_helpers.h"

namespace tessera {
namespace {

using testing::expect_rejected;
using testing::random_tensor;
using testing::relative_error;

// Rank r's values for tensor `tag`: tag * 1000 + r * 100 + flat index (exact in f32).
float value(int tag, int rank, int64_t index) { return static_cast<float>(tag * 1000 + rank * 100 + index); }

Tensor make_values(int tag, int rank, const Shape& shape) {
  std::vector<float> values(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < values.size(); ++i) values[i] = value(tag, rank, static_cast<int64_t>(i));
  return Tensor::from_vector(values, shape);
}

Tensor make_input(int rank, const Shape& shape) { return make_values(1, rank, shape).set_requires_grad(true); }

class TensorParallelTest : public ::testing::Test {
 protected:
  MpiCommunicator tp_{MPI_COMM_WORLD, "tp"};
  int rank_ = tp_.rank();
  int size_ = tp_.size();
};

constexpr int64_t kRows = 3, kCols = 5;  // odd sizes

TEST_F(TensorParallelTest, CopyToIsIdentityForwardAllReduceBackward) {
  Tensor x = make_input(rank_, {kRows, kCols});
  Tensor y = copy_to_tensor_parallel(x, tp_);
  y.backward(make_values(2, rank_, {kRows, kCols}));
  std::vector<float> got_y = y.to_vector<float>(), got_dx = x.grad().to_vector<float>();
  for (int64_t i = 0; i < kRows * kCols; ++i) {
    float sum = 0;
    for (int q = 0; q < size_; ++q) sum += value(2, q, i);
    ASSERT_EQ(got_y[i], value(1, rank_, i)) << "element " << i;
    ASSERT_EQ(got_dx[i], sum) << "element " << i;
  }
}

TEST_F(TensorParallelTest, ReduceFromIsAllReduceForwardIdentityBackward) {
  Tensor x = make_input(rank_, {kRows, kCols});
  Tensor y = reduce_from_tensor_parallel(x, tp_);
  y.backward(make_values(2, rank_, {kRows, kCols}));
  std::vector<float> got_y = y.to_vector<float>(), got_dx = x.grad().to_vector<float>();
  for (int64_t i = 0; i < kRows * kCols; ++i) {
    float sum = 0;
    for (int q = 0; q < size_; ++q) sum += value(1, q, i);
    ASSERT_EQ(got_y[i], sum) << "element " << i;
    ASSERT_EQ(got_dx[i], value(2, rank_, i)) << "element " << i;
  }
}

TEST_F(TensorParallelTest, GatherFromConcatenatesLastDimAndSplitsBackward) {
  const int64_t wide = kCols * size_;
  Tensor x = make_input(rank_, {kRows, kCols});
  Tensor y = gather_from_tensor_parallel(x, tp_);
  ASSERT_EQ(y.shape(), (Shape{kRows, wide}));
  y.backward(make_values(2, rank_, {kRows, wide}));
  std::vector<float> got_y = y.to_vector<float>(), got_dx = x.grad().to_vector<float>();
  for (int64_t i = 0; i < kRows; ++i) {
    for (int q = 0; q < size_; ++q) {
      for (int64_t j = 0; j < kCols; ++j) {
        ASSERT_EQ(got_y[i * wide + q * kCols + j], value(1, q, i * kCols + j)) << "row " << i << " block " << q;
      }
    }
    for (int64_t j = 0; j < kCols; ++j) {
      ASSERT_EQ(got_dx[i * kCols + j], value(2, rank_, i * wide + rank_ * kCols + j)) << "row " << i;
    }
  }
}

TEST_F(TensorParallelTest, ScatterToKeepsOwnLastDimSliceAndGathersBackward) {
  const int64_t wide = kCols * size_;
  Tensor x = make_input(rank_, {kRows, wide});
  Tensor y = scatter_to_tensor_parallel(x, tp_);
  ASSERT_EQ(y.shape(), (Shape{kRows, kCols}));
  y.backward(make_values(2, rank_, {kRows, kCols}));
  std::vector<float> got_y = y.to_vector<float>(), got_dx = x.grad().to_vector<float>();
  for (int64_t i = 0; i < kRows; ++i) {
    for (int64_t j = 0; j < kCols; ++j) {
      ASSERT_EQ(got_y[i * kCols + j], value(1, rank_, i * wide + rank_ * kCols + j)) << "row " << i;
    }
    for (int q = 0; q < size_; ++q) {
      for (int64_t j = 0; j < kCols; ++j) {
        ASSERT_EQ(got_dx[i * wide + q * kCols + j], value(2, q, i * kCols + j)) << "row " << i << " block " << q;
      }
    }
  }
}

TEST_F(TensorParallelTest, SequenceGatherIsAllGatherDim0ForwardReduceScatterBackward) {
  const int64_t block = kRows * kCols;
  Tensor x = make_input(rank_, {kRows, kCols});
  Tensor y = gather_from_sequence_parallel(x, tp_);
  ASSERT_EQ(y.shape(), (Shape{kRows * size_, kCols}));
  y.backward(make_values(2, rank_, {kRows * size_, kCols}));
  std::vector<float> got_y = y.to_vector<float>(), got_dx = x.grad().to_vector<float>();
  for (int64_t i = 0; i < block; ++i) {
    float sum = 0;
    for (int q = 0; q < size_; ++q) {
      ASSERT_EQ(got_y[q * block + i], value(1, q, i)) << "block " << q << " element " << i;
      sum += value(2, q, rank_ * block + i);
    }
    ASSERT_EQ(got_dx[i], sum) << "element " << i;
  }
}

TEST_F(TensorParallelTest, SequenceReduceScatterIsReduceScatterForwardAllGatherBackward) {
  const int64_t block = kRows * kCols;
  Tensor x = make_input(rank_, {kRows * size_, kCols});
  Tensor y = reduce_scatter_to_sequence_parallel(x, tp_);
  ASSERT_EQ(y.shape(), (Shape{kRows, kCols}));
  y.backward(make_values(2, rank_, {kRows, kCols}));
  std::vector<float> got_y = y.to_vector<float>(), got_dx = x.grad().to_vector<float>();
  for (int64_t i = 0; i < block; ++i) {
    float sum = 0;
    for (int q = 0; q < size_; ++q) {
      sum += value(1, q, rank_ * block + i);
      ASSERT_EQ(got_dx[q * block + i], value(2, q, i)) << "block " << q << " element " << i;
    }
    ASSERT_EQ(got_y[i], sum) << "element " << i;
  }
}

// Along dim 1 of [kRows, n, kCols] (the models' [B, T, C]): element (i, t, j) of rank q's
// tensor of extent n is value(tag, q, (i * n + t) * kCols + j).
constexpr int64_t kSeqShard = 2;

TEST_F(TensorParallelTest, SequenceGatherAlongDim1ConcatenatesTheSequenceShards) {
  const int64_t full = kSeqShard * size_;
  Tensor x = make_input(rank_, {kRows, kSeqShard, kCols});
  Tensor y = gather_from_sequence_parallel(x, tp_, 1);
  ASSERT_EQ(y.shape(), (Shape{kRows, full, kCols}));
  y.backward(make_values(2, rank_, {kRows, full, kCols}));
  std::vector<float> got_y = y.to_vector<float>(), got_dx = x.grad().to_vector<float>();
  for (int64_t i = 0; i < kRows; ++i) {
    for (int64_t t = 0; t < full; ++t) {
      for (int64_t j = 0; j < kCols; ++j) {
        const int owner = static_cast<int>(t / kSeqShard);
        ASSERT_EQ(got_y[(i * full + t) * kCols + j], value(1, owner, (i * kSeqShard + t % kSeqShard) * kCols + j))
            << "row " << i << " position " << t;
      }
    }
    for (int64_t t = 0; t < kSeqShard; ++t) {
      for (int64_t j = 0; j < kCols; ++j) {
        float sum = 0;
        for (int q = 0; q < size_; ++q) sum += value(2, q, (i * full + rank_ * kSeqShard + t) * kCols + j);
        ASSERT_EQ(got_dx[(i * kSeqShard + t) * kCols + j], sum) << "row " << i << " position " << t;
      }
    }
  }
}

TEST_F(TensorParallelTest, SequenceReduceScatterAlongDim1KeepsOwnSequenceShard) {
  const int64_t full = kSeqShard * size_;
  Tensor x = make_input(rank_, {kRows, full, kCols});
  Tensor y = reduce_scatter_to_sequence_parallel(x, tp_, -2);  // dim 1, counted from the end
  ASSERT_EQ(y.shape(), (Shape{kRows, kSeqShard, kCols}));
  y.backward(make_values(2, rank_, {kRows, kSeqShard, kCols}));
  std::vector<float> got_y = y.to_vector<float>(), got_dx = x.grad().to_vector<float>();
  for (int64_t i = 0; i < kRows; ++i) {
    for (int64_t t = 0; t < kSeqShard; ++t) {
      for (int64_t j = 0; j < kCols; ++j) {
        float sum = 0;
        for (int q = 0; q < size_; ++q) sum += value(1, q, (i * full + rank_ * kSeqShard + t) * kCols + j);
        ASSERT_EQ(got_y[(i * kSeqShard + t) * kCols + j], sum) << "row " << i << " position " << t;
      }
    }
    for (int64_t t = 0; t < full; ++t) {
      for (int64_t j = 0; j < kCols; ++j) {
        const int owner = static_cast<int>(t / kSeqShard);
        ASSERT_EQ(got_dx[(i * full + t) * kCols + j], value(2, owner, (i * kSeqShard + t % kSeqShard) * kCols + j))
            << "row " << i << " position " << t;
      }
    }
  }
}

// How the tp MLP is wired: Megatron's default (column output stays split, row input is split),
// the gather/scatter round trip (column gathers its output, row scatters its input), or
// sequence parallel (input and output sharded along T: dim 0 of [T, B, C], or dim 1 of the
// models' [B, T, C]).
enum class MlpWiring { Split, GatherThenScatter, SequenceParallel, SequenceParallelBatchFirst };

// This rank's block along `dim` (its sequence shard), contiguous.
Tensor sequence_shard(const Tensor& full, const Communicator& tp, int64_t dim) {
  int64_t length = full.size(dim) / tp.size();
  return full.narrow(dim, tp.rank() * length, length).contiguous();
}

// The single-rank MLP Linear(C, H) -> gelu -> Linear(H, C) on every rank, and the tp MLP
// ColumnParallelLinear -> gelu -> RowParallelLinear built from the same seed, on x [T, B, C]
// ([B, T, C] for SequenceParallelBatchFirst).
// Biases are set to random values (sliced for the column layer) so that a bias added per rank
// before the all-reduce would show. Checks y, dL/dx and every parameter gradient.
void check_mlp_matches_single_rank(Communicator& tp, MlpWiring wiring) {
  constexpr int64_t kSeq = 8, kBatch = 3, kModel = 8, kHidden = 16;
  constexpr uint64_t kSeed = 1234;
  const int rank = tp.rank(), size = tp.size();
  const int64_t shard = kHidden / size;
  const bool batch_first = wiring == MlpWiring::SequenceParallelBatchFirst;
  const bool sequence_parallel = wiring == MlpWiring::SequenceParallel || batch_first;
  const bool gather_then_scatter = wiring == MlpWiring::GatherThenScatter;
  const int64_t sequence_dim = batch_first ? 1 : 0;
  const Shape activation_shape = batch_first ? Shape{kBatch, kSeq, kModel} : Shape{kSeq, kBatch, kModel};

  Generator reference_init(kSeed);
  Linear fc1(kModel, kHidden, true, reference_init);
  Linear fc2(kHidden, kModel, true, reference_init);
  Generator parallel_init(kSeed);
  ColumnParallelLinear column(
      kModel, kHidden, &tp, parallel_init,
      {.gather_output = gather_then_scatter, .sequence_parallel = sequence_parallel, .sequence_dim = sequence_dim});
  RowParallelLinear row(kHidden, kModel, &tp, parallel_init,
                        {.input_is_parallel = !gather_then_scatter,
                         .sequence_parallel = sequence_parallel,
                         .sequence_dim = sequence_dim});

  Generator data(99);
  Tensor bias1 = random_tensor({kHidden}, data), bias2 = random_tensor({kModel}, data);
  Tensor x_values = random_tensor(activation_shape, data);
  Tensor dL_dy = random_tensor(activation_shape, data);
  {
    NoGradGuard no_grad;
    fc1.bias().detach().copy_(bias1);
    fc2.bias().detach().copy_(bias2);
    column.bias().detach().copy_(bias1.narrow(0, rank * shard, shard));
    row.bias().detach().copy_(bias2);
  }

  Tensor x_reference = x_values.clone().set_requires_grad(true);
  Tensor y_reference = fc2.forward(gelu(fc1.forward(x_reference)));
  y_reference.backward(dL_dy);
  // What this rank sees of an activation of the single-rank run.
  auto local = [&](const Tensor& full) { return sequence_parallel ? sequence_shard(full, tp, sequence_dim) : full; };
  Tensor x_parallel = local(x_values).clone().set_requires_grad(true);
  Tensor y_parallel = row.forward(gelu(column.forward(x_parallel)));
  y_parallel.backward(local(dL_dy));
  Tensor row_bias_grad = row.bias().grad().clone();
  if (sequence_parallel) tp.all_reduce(row_bias_grad, ReduceOp::Sum);  // partial per sequence shard

  constexpr double kTolerance = 1e-5;
  EXPECT_LE(relative_error(y_parallel, local(y_reference)), kTolerance) << "output";
  EXPECT_LE(relative_error(x_parallel.grad(), local(x_reference.grad())), kTolerance) << "dL/dx";
  EXPECT_LE(relative_error(column.weight().grad(), fc1.weight().grad().narrow(0, rank * shard, shard)), kTolerance)
      << "column weight gradient";
  EXPECT_LE(relative_error(column.bias().grad(), fc1.bias().grad().narrow(0, rank * shard, shard)), kTolerance)
      << "column bias gradient";
  EXPECT_LE(relative_error(row.weight().grad(), fc2.weight().grad().narrow(1, rank * shard, shard)), kTolerance)
      << "row weight gradient";
  EXPECT_LE(relative_error(row_bias_grad, fc2.bias().grad()), kTolerance) << "row bias gradient";
  // The shards are the single-rank weights' slices bit for bit.
  EXPECT_EQ(relative_error(column.weight(), fc1.weight().narrow(0, rank * shard, shard)), 0.0);
  EXPECT_EQ(relative_error(row.weight(), fc2.weight().narrow(1, rank * shard, shard)), 0.0);
}

TEST_F(TensorParallelTest, MlpMatchesSingleRank) { check_mlp_matches_single_rank(tp_, MlpWiring::Split); }

TEST_F(TensorParallelTest, MlpWithGatheredOutputAndScatteredInputMatchesSingleRank) {
  check_mlp_matches_single_rank(tp_, MlpWiring::GatherThenScatter);
}

TEST_F(TensorParallelTest, SequenceParallelMlpMatchesSingleRankOnItsSequenceShard) {
  check_mlp_matches_single_rank(tp_, MlpWiring::SequenceParallel);
}

TEST_F(TensorParallelTest, SequenceParallelMlpOnBatchFirstActivationsMatchesSingleRank) {
  check_mlp_matches_single_rank(tp_, MlpWiring::SequenceParallelBatchFirst);
}

TEST_F(TensorParallelTest, BlockSplitColumnWeightHoldsTheRankSliceOfEveryBlock) {
  constexpr int64_t kIn = 4, kBlock = 4 * 2;  // two blocks of 8 rows, like SwiGLU's gate and up
  const int64_t slice = kBlock / size_;
  Generator reference_init(7), parallel_init(7);
  Linear reference(kIn, 2 * kBlock, false, reference_init);
  ColumnParallelLinear column(kIn, 2 * kBlock, &tp_, parallel_init, {.bias = false, .output_blocks = 2});
  ASSERT_EQ(column.weight().shape(), (Shape{2 * slice, kIn}));
  const Tensor& full = reference.weight();
  EXPECT_EQ(relative_error(column.weight().narrow(0, 0, slice), full.narrow(0, rank_ * slice, slice)), 0.0) << "gate";
  EXPECT_EQ(relative_error(column.weight().narrow(0, slice, slice), full.narrow(0, kBlock + rank_ * slice, slice)), 0.0)
      << "up";
  // The generator advanced exactly as Linear's did.
  EXPECT_EQ(parallel_init.state().offset, reference_init.state().offset);
}

TEST_F(TensorParallelTest, LayersWithoutAGroupAreLinearBitForBit) {
  constexpr int64_t kIn = 6, kOut = 5;
  Generator reference_init(3), layer_init(3), data(11);
  Linear first(kIn, kOut, true, reference_init), second(kOut, kIn, true, reference_init);
  ColumnParallelLinear column(kIn, kOut, nullptr, layer_init);
  RowParallelLinear row(kOut, kIn, nullptr, layer_init);
  Tensor bias1 = random_tensor({kOut}, data), bias2 = random_tensor({kIn}, data);
  {
    NoGradGuard no_grad;
    first.bias().detach().copy_(bias1);
    column.bias().detach().copy_(bias1);
    second.bias().detach().copy_(bias2);
    row.bias().detach().copy_(bias2);
  }
  Tensor x = random_tensor({3, kIn}, data), dL_dy = random_tensor({3, kIn}, data);
  Tensor y_reference = second.forward(gelu(first.forward(x)));
  Tensor y = row.forward(gelu(column.forward(x)));
  y_reference.backward(dL_dy);
  y.backward(dL_dy);
  EXPECT_EQ(y.to_vector<float>(), y_reference.to_vector<float>());
  EXPECT_EQ(column.weight().grad().to_vector<float>(), first.weight().grad().to_vector<float>());
  EXPECT_EQ(column.bias().grad().to_vector<float>(), first.bias().grad().to_vector<float>());
  EXPECT_EQ(row.weight().grad().to_vector<float>(), second.weight().grad().to_vector<float>());
  EXPECT_EQ(row.bias().grad().to_vector<float>(), second.bias().grad().to_vector<float>());
}

TEST_F(TensorParallelTest, SizesThatDoNotDivideAreRejectedBeforeCommunication) {
  const int64_t odd = 2 * size_ + 1;  // never divisible by 2 or 4
  Generator generator(0);
  expect_rejected([&] { ColumnParallelLinear(8, odd, &tp_, generator); },
                  "out_features=" + std::to_string(odd) + " does not divide by the tensor-parallel size");
  expect_rejected([&] { RowParallelLinear(odd, 8, &tp_, generator); },
                  "in_features=" + std::to_string(odd) + " does not divide by the tensor-parallel size");
  expect_rejected([&] { ColumnParallelLinear(8, 2 * size_ * 3, &tp_, generator, {.output_blocks = 4}); },
                  "does not divide by the tensor-parallel size " + std::to_string(size_) + " times output_blocks");
  expect_rejected([&] { gather_from_sequence_parallel(Tensor::zeros({2, 2}), tp_, 2); }, "dim 2 is out of range");
  expect_rejected([&] { scatter_to_tensor_parallel(Tensor::zeros({2, odd}), tp_); }, "does not divide by the group");
  expect_rejected(
      [&] {
        reduce_scatter_to_sequence_parallel(Tensor::zeros({odd, 2}), tp_);
      },
      "does not divide by the group");
  expect_rejected(
      [&] { ColumnParallelLinear(8, 8, &tp_, generator, {.gather_output = true, .sequence_parallel = true}); },
      "gather_output and sequence_parallel are exclusive");
  expect_rejected(
      [&] { RowParallelLinear(8, 8, &tp_, generator, {.input_is_parallel = false, .sequence_parallel = true}); },
      "sequence_parallel needs input_is_parallel");
  // No rank entered a collective above: the group still agrees on the next one.
  Tensor one = Tensor::ones({1});
  tp_.all_reduce(one, ReduceOp::Sum);
  EXPECT_EQ(one.item(), size_);
}

}  // namespace
}  // namespace tessera
