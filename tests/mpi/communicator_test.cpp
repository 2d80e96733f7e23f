// MpiCommunicator against closed-form results, run as 2 and 4 real ranks. Rank r contributes
// value(r, i) at element i; every expected result is computed here from that formula, never
// through MPI. Odd sizes (1, 7, 1001) and every dtype; async handles; point-to-point ring;
// all_to_all; argument errors (thrown on every rank before any communication).
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "parallel/mpi_communicator.h"

namespace tessera {
namespace {

const std::vector<int64_t> kSizes = {1, 7, 1001};
const std::vector<DType> kDtypes = {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64};

// Exactly representable in every dtype, also summed over 4 ranks: 16-bit floats get small
// integers (bf16 holds integers up to 256 exactly), the rest rank * 1000 + i.
double value(DType dtype, int rank, int64_t i) {
  bool narrow = dtype == DType::BF16 || dtype == DType::F16;
  return narrow ? rank * 3 + i % 13 : rank * 1000.0 + static_cast<double>(i);
}

Tensor make_values(DType dtype, int rank, int64_t n, int64_t first = 0) {
  std::vector<double> values(n);
  for (int64_t i = 0; i < n; ++i) values[i] = value(dtype, rank, first + i);
  return Tensor::from_vector(values, {n}).to(dtype);
}

std::vector<double> as_doubles(const Tensor& tensor) { return tensor.to_vector<double>(); }

std::string label(DType dtype, int64_t n) { return std::string(dtype_name(dtype)) + " n=" + std::to_string(n); }

class MpiCommunicatorTest : public ::testing::Test {
 protected:
  MpiCommunicator world_{MPI_COMM_WORLD, "world"};
  int rank_ = world_.rank();
  int size_ = world_.size();
};

TEST_F(MpiCommunicatorTest, AllReduceSumAvgMaxEveryDtype) {
  for (DType dtype : kDtypes) {
    for (int64_t n : kSizes) {
      for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max}) {
        if (op == ReduceOp::Avg && !is_floating(dtype)) continue;
        Tensor tensor = make_values(dtype, rank_, n);
        world_.all_reduce(tensor, op);
        std::vector<double> got = as_doubles(tensor);
        for (int64_t i = 0; i < n; ++i) {
          double sum = 0;
          for (int r = 0; r < size_; ++r) sum += value(dtype, r, i);
          double expected = op == ReduceOp::Sum ? sum : op == ReduceOp::Avg ? sum / size_ : value(dtype, size_ - 1, i);
          ASSERT_EQ(got[i], expected) << label(dtype, n) << " op " << reduce_op_name(op) << " element " << i;
        }
      }
    }
  }
}

TEST_F(MpiCommunicatorTest, AllGatherConcatenatesInRankOrder) {
  for (DType dtype : kDtypes) {
    for (int64_t n : kSizes) {
      Tensor in = make_values(dtype, rank_, n).reshape({n, 1});
      Tensor out = Tensor::zeros({n * size_, 1}, dtype);
      world_.all_gather(in, out);
      std::vector<double> got = as_doubles(out);
      for (int q = 0; q < size_; ++q) {
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(got[q * n + i], value(dtype, q, i)) << label(dtype, n) << " block " << q;
        }
      }
    }
  }
}

TEST_F(MpiCommunicatorTest, ReduceScatterGivesEachRankItsReducedBlock) {
  for (DType dtype : kDtypes) {
    for (int64_t n : kSizes) {
      Tensor in = make_values(dtype, rank_, n * size_);
      Tensor out = Tensor::zeros({n}, dtype);
      world_.reduce_scatter(in, out, ReduceOp::Sum);
      std::vector<double> got = as_doubles(out);
      for (int64_t i = 0; i < n; ++i) {
        double sum = 0;
        for (int r = 0; r < size_; ++r) sum += value(dtype, r, rank_ * n + i);
        ASSERT_EQ(got[i], sum) << label(dtype, n) << " element " << i;
      }
    }
  }
}

TEST_F(MpiCommunicatorTest, BroadcastCopiesTheRootsTensor) {
  int root = size_ - 1;
  for (DType dtype : kDtypes) {
    for (int64_t n : kSizes) {
      Tensor tensor = make_values(dtype, rank_, n);
      world_.broadcast(tensor, root);
      std::vector<double> got = as_doubles(tensor);
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], value(dtype, root, i)) << label(dtype, n);
    }
  }
}

TEST_F(MpiCommunicatorTest, SendRecvAroundARing) {
  int next = (rank_ + 1) % size_;
  int previous = (rank_ + size_ - 1) % size_;
  for (int64_t n : kSizes) {
    Tensor mine = make_values(DType::F32, rank_, n);
    Tensor received = Tensor::zeros({n}, DType::F32);
    // Even ranks send first, odd ranks receive first: no rank waits on a blocked sender.
    if (rank_ % 2 == 0) {
      world_.send(mine, next, 7);
      world_.recv(received, previous, 7);
    } else {
      world_.recv(received, previous, 7);
      world_.send(mine, next, 7);
    }
    std::vector<double> got = as_doubles(received);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], value(DType::F32, previous, i)) << "n=" << n;
  }
}

TEST_F(MpiCommunicatorTest, AllToAllTransposesBlocks) {
  for (int64_t n : kSizes) {
    // Block q of rank r's input holds r * 1000 + q * 100 + i, with n rows of 2 columns.
    std::vector<int64_t> in_values;
    for (int q = 0; q < size_; ++q) {
      for (int64_t i = 0; i < n * 2; ++i) in_values.push_back(rank_ * 1000000 + q * 10000 + i);
    }
    Tensor in = Tensor::from_vector(in_values, {n * size_, 2});
    Tensor out = Tensor::zeros({n * size_, 2}, DType::I64);
    world_.all_to_all(in, out);
    std::vector<int64_t> got = out.to_vector<int64_t>();
    for (int q = 0; q < size_; ++q) {
      for (int64_t i = 0; i < n * 2; ++i) {
        ASSERT_EQ(got[q * n * 2 + i], q * 1000000 + rank_ * 10000 + i) << "n=" << n;
      }
    }
  }
}

TEST_F(MpiCommunicatorTest, AsyncHandlesCompleteWithTheSameResults) {
  const int64_t n = 1001;
  for (DType dtype : {DType::F32, DType::BF16, DType::I64}) {
    Tensor reduced = make_values(dtype, rank_, n);
    Tensor gathered = Tensor::zeros({n * size_}, dtype);
    Tensor scattered = Tensor::zeros({n}, dtype);
    Tensor gather_in = make_values(dtype, rank_, n);
    Tensor scatter_in = make_values(dtype, rank_, n * size_);
    auto reduce_work = world_.all_reduce_async(reduced, ReduceOp::Sum);
    auto gather_work = world_.all_gather_async(gather_in, gathered);
    auto scatter_work = world_.reduce_scatter_async(scatter_in, scattered, ReduceOp::Max);
    while (!reduce_work->is_completed()) {
    }
    gather_work->wait();
    scatter_work->wait();
    scatter_work->wait();  // waiting twice is harmless
    EXPECT_TRUE(gather_work->is_completed());
    std::vector<double> sum = as_doubles(reduced), gather = as_doubles(gathered), max = as_doubles(scattered);
    for (int64_t i = 0; i < n; ++i) {
      double expected_sum = 0;
      for (int r = 0; r < size_; ++r) expected_sum += value(dtype, r, i);
      ASSERT_EQ(sum[i], expected_sum) << dtype_name(dtype);
      ASSERT_EQ(max[i], value(dtype, size_ - 1, rank_ * n + i)) << dtype_name(dtype);
      for (int q = 0; q < size_; ++q) ASSERT_EQ(gather[q * n + i], value(dtype, q, i));
    }
  }
}

TEST_F(MpiCommunicatorTest, DroppedHandleStillFinishesTheOutput) {
  Tensor tensor = make_values(DType::BF16, rank_, 7);
  world_.all_reduce_async(tensor, ReduceOp::Avg).reset();
  std::vector<double> got = as_doubles(tensor);
  for (int64_t i = 0; i < 7; ++i) {
    double sum = 0;
    for (int r = 0; r < size_; ++r) sum += value(DType::BF16, r, i);
    ASSERT_EQ(got[i], sum / size_) << "element " << i;
  }
}

TEST_F(MpiCommunicatorTest, SplitGroupReducesOnlyOverItsMembers) {
  auto parity = world_.split(rank_ % 2, rank_, "parity");
  EXPECT_EQ(parity->size(), (size_ + 1 - rank_ % 2) / 2);
  EXPECT_EQ(parity->rank(), rank_ / 2);
  Tensor tensor = Tensor::full({3}, rank_ + 1.0, DType::F64);
  parity->all_reduce(tensor, ReduceOp::Sum);
  double expected = 0;
  for (int r = rank_ % 2; r < size_; r += 2) expected += r + 1.0;
  EXPECT_EQ(tensor.to_vector<double>(), std::vector<double>(3, expected));
}

// Every rank makes the same mistake, so every rank throws before communicating.
TEST_F(MpiCommunicatorTest, BadArgumentsNameTheOpGroupAndRank) {
  auto message_of = [](auto&& call) -> std::string {
    try {
      call();
    } catch (const Error& error) {
      return error.what();
    }
    return "no error";
  };
  std::string rank_text = "rank " + std::to_string(rank_) + " of " + std::to_string(size_);
  Tensor strided = Tensor::zeros({4, 4}).transpose(0, 1);
  std::string not_contiguous = message_of([&] { world_.all_reduce(strided, ReduceOp::Sum); });
  EXPECT_NE(not_contiguous.find("all_reduce on group 'world' (" + rank_text), std::string::npos) << not_contiguous;
  EXPECT_NE(not_contiguous.find("not contiguous"), std::string::npos) << not_contiguous;

  Tensor in = Tensor::zeros({3});
  Tensor wrong_out = Tensor::zeros({3 * size_ + 1});
  std::string gather = message_of([&] { world_.all_gather(in, wrong_out); });
  EXPECT_NE(gather.find("all_gather on group 'world'"), std::string::npos) << gather;

  Tensor odd = Tensor::zeros({size_ * 3 + 1});
  Tensor out = Tensor::zeros({3});
  std::string scatter = message_of([&] { world_.reduce_scatter(odd, out, ReduceOp::Sum); });
  EXPECT_NE(scatter.find("not divisible by the group size"), std::string::npos) << scatter;

  Tensor ints = Tensor::zeros({3}, DType::I32);
  std::string average = message_of([&] { world_.all_reduce(ints, ReduceOp::Avg); });
  EXPECT_NE(average.find("avg needs a floating dtype"), std::string::npos) << average;

  std::string peer = message_of([&] { world_.send(in, size_, 0); });
  EXPECT_NE(peer.find("outside the group"), std::string::npos) << peer;
  world_.barrier();
}

}  // namespace
}  // namespace tessera
