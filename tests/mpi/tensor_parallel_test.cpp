// Tensor- and sequence-parallel mappings and linear layers, with the world as the tp group
// (tp = 2 and 4). Mappings: forward and backward against closed-form values (rank r's inputs
// and output gradients are small integers from a formula, exact in f32, so comparisons are
// exact). Layers: a Column(gelu)->Row MLP, wired three ways (split, gather/scatter, sequence
// parallel), against the single-rank Linear->gelu->Linear computed on every rank from the same
// seed: output, input gradient and every parameter gradient (each rank's shard against the
// matching slice of the single-rank gradient), relative error <= 1e-5. Bad sizes and
// contradictory options are rejected with a one-line reason before any communication.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/check.h"
#include "core/nn/layers.h"
#include "core/ops/ops.h"
#include "parallel/mpi_communicator.h"
#include "parallel/tensor_parallel_linear.h"
#include "parallel/tp_mappings.h"

namespace tessera {
namespace {

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

// max |got - expected| / max |expected|.
double relative_error(const Tensor& got, const Tensor& expected) {
  EXPECT_EQ(got.shape(), expected.shape());
  std::vector<double> a = got.to_vector<double>(), b = expected.to_vector<double>();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff = std::max(diff, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return scale > 0 ? diff / scale : diff;
}

Tensor random_tensor(const Shape& shape, Generator& generator) {
  Tensor t = Tensor::empty(shape);
  return uniform_(t, generator, -1.0, 1.0);
}

// How the tp MLP is wired: Megatron's default (column output stays split, row input is split),
// the gather/scatter round trip (column gathers its output, row scatters its input), or
// sequence parallel (input and output sharded along T, dim 0).
enum class MlpWiring { Split, GatherThenScatter, SequenceParallel };

// This rank's block along dim 0 (its sequence shard), contiguous.
Tensor sequence_shard(const Tensor& full, const Communicator& tp) {
  int64_t length = full.size(0) / tp.size();
  return full.narrow(0, tp.rank() * length, length).contiguous();
}

// The single-rank MLP Linear(C, H) -> gelu -> Linear(H, C) on every rank, and the tp MLP
// ColumnParallelLinear -> gelu -> RowParallelLinear built from the same seed, on x [T, B, C].
// Biases are set to random values (sliced for the column layer) so that a bias added per rank
// before the all-reduce would show. Checks y, dL/dx and every parameter gradient.
void check_mlp_matches_single_rank(Communicator& tp, MlpWiring wiring) {
  constexpr int64_t kSeq = 8, kBatch = 3, kModel = 8, kHidden = 16;
  constexpr uint64_t kSeed = 1234;
  const int rank = tp.rank(), size = tp.size();
  const int64_t shard = kHidden / size;
  const bool sequence_parallel = wiring == MlpWiring::SequenceParallel;
  const bool gather_then_scatter = wiring == MlpWiring::GatherThenScatter;

  Generator reference_init(kSeed);
  Linear fc1(kModel, kHidden, true, reference_init);
  Linear fc2(kHidden, kModel, true, reference_init);
  Generator parallel_init(kSeed);
  ColumnParallelLinear column(kModel, kHidden, tp, parallel_init,
                              {.gather_output = gather_then_scatter, .sequence_parallel = sequence_parallel});
  RowParallelLinear row(kHidden, kModel, tp, parallel_init,
                        {.input_is_parallel = !gather_then_scatter, .sequence_parallel = sequence_parallel});

  Generator data(99);
  Tensor bias1 = random_tensor({kHidden}, data), bias2 = random_tensor({kModel}, data);
  Tensor x_values = random_tensor({kSeq, kBatch, kModel}, data);
  Tensor dL_dy = random_tensor({kSeq, kBatch, kModel}, data);
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
  // What this rank sees of a [T, ...] tensor of the single-rank run.
  auto local = [&](const Tensor& full) { return sequence_parallel ? sequence_shard(full, tp) : full; };
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

template <typename Build>
void expect_rejected(Build build, const std::string& reason) {
  try {
    build();
    ADD_FAILURE() << "expected an error containing '" << reason << "'";
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find(reason), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "not one line: " << message;
  }
}

TEST_F(TensorParallelTest, SizesThatDoNotDivideAreRejectedBeforeCommunication) {
  const int64_t odd = 2 * size_ + 1;  // never divisible by 2 or 4
  Generator generator(0);
  expect_rejected([&] { ColumnParallelLinear(8, odd, tp_, generator); },
                  "out_features=" + std::to_string(odd) + " does not divide by the tensor-parallel size");
  expect_rejected([&] { RowParallelLinear(odd, 8, tp_, generator); },
                  "in_features=" + std::to_string(odd) + " does not divide by the tensor-parallel size");
  expect_rejected([&] { scatter_to_tensor_parallel(Tensor::zeros({2, odd}), tp_); }, "does not divide by the group");
  expect_rejected(
      [&] {
        reduce_scatter_to_sequence_parallel(Tensor::zeros({odd, 2}), tp_);
      },
      "does not divide by the group");
  expect_rejected(
      [&] { ColumnParallelLinear(8, 8, tp_, generator, {.gather_output = true, .sequence_parallel = true}); },
      "gather_output and sequence_parallel are exclusive");
  expect_rejected(
      [&] { RowParallelLinear(8, 8, tp_, generator, {.input_is_parallel = false, .sequence_parallel = true}); },
      "sequence_parallel needs input_is_parallel");
  // No rank entered a collective above: the group still agrees on the next one.
  Tensor one = Tensor::ones({1});
  tp_.all_reduce(one, ReduceOp::Sum);
  EXPECT_EQ(one.item(), size_);
}

}  // namespace
}  // namespace tessera
