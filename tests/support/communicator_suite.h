// The Communicator conformance suite: every operation against closed-form results, shared by
// the backends. tests/mpi/communicator_test.cpp runs it on MpiCommunicator as 2 and 4 real
// ranks on the CPU; tests/gpu/nccl_communicator_gpu_test.cpp on a one-rank NcclCommunicator on
// cuda:0. Each function is the body of one test: it takes the communicator under test and the
// device its tensors live on, and asserts with gtest (a fatal failure returns from it).
//
// Rank r contributes value(dtype, r, i) at element i; every expected result is computed here
// from that formula, never through a communicator. Odd sizes (1, 7, 1001) and every dtype;
// async handles (polled, waited twice, dropped); point-to-point ring, blocking and batched (both
// directions at once, several messages per peer in order); all_to_all; split; and
// argument errors (thrown on every rank before any communication). Results are read back with
// to_vector(), which on a GPU reads through the compute stream: the suite also checks that a
// backend orders its results before later work there.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "parallel/communicator.h"

namespace tessera::testing::communicator_suite {

inline const std::vector<int64_t> kSizes = {1, 7, 1001};
inline const std::vector<DType> kDtypes = {DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64};

// Exactly representable in every dtype, also summed over 4 ranks: 16-bit floats get small
// integers (bf16 holds integers up to 256 exactly), the rest rank * 1000 + i.
inline double value(DType dtype, int rank, int64_t i) {
  bool narrow = dtype == DType::BF16 || dtype == DType::F16;
  return narrow ? rank * 3 + i % 13 : rank * 1000.0 + static_cast<double>(i);
}

inline Tensor make_values(DType dtype, int rank, int64_t n, Device device) {
  std::vector<double> values(n);
  for (int64_t i = 0; i < n; ++i) values[i] = value(dtype, rank, i);
  return Tensor::from_vector(values, {n}).to(dtype).to(device);
}

inline std::string label(DType dtype, int64_t n) { return std::string(dtype_name(dtype)) + " n=" + std::to_string(n); }

inline double sum_over_ranks(DType dtype, int size, int64_t i) {
  double sum = 0;
  for (int r = 0; r < size; ++r) sum += value(dtype, r, i);
  return sum;
}

inline void all_reduce_sum_avg_max_every_dtype(Communicator& comm, Device device) {
  const int size = comm.size();
  for (DType dtype : kDtypes) {
    for (int64_t n : kSizes) {
      for (ReduceOp op : {ReduceOp::Sum, ReduceOp::Avg, ReduceOp::Max}) {
        if (op == ReduceOp::Avg && !is_floating(dtype)) continue;
        Tensor tensor = make_values(dtype, comm.rank(), n, device);
        comm.all_reduce(tensor, op);
        std::vector<double> got = tensor.to_vector<double>();
        for (int64_t i = 0; i < n; ++i) {
          double sum = sum_over_ranks(dtype, size, i);
          double expected = op == ReduceOp::Sum ? sum : op == ReduceOp::Avg ? sum / size : value(dtype, size - 1, i);
          ASSERT_EQ(got[i], expected) << label(dtype, n) << " op " << reduce_op_name(op) << " element " << i;
        }
      }
    }
  }
}

inline void all_gather_concatenates_in_rank_order(Communicator& comm, Device device) {
  const int size = comm.size();
  for (DType dtype : kDtypes) {
    for (int64_t n : kSizes) {
      Tensor in = make_values(dtype, comm.rank(), n, device).reshape({n, 1});
      Tensor out = Tensor::zeros({n * size, 1}, dtype, device);
      comm.all_gather(in, out);
      std::vector<double> got = out.to_vector<double>();
      for (int q = 0; q < size; ++q) {
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(got[q * n + i], value(dtype, q, i)) << label(dtype, n) << " block " << q;
        }
      }
    }
  }
}

inline void reduce_scatter_gives_each_rank_its_reduced_block(Communicator& comm, Device device) {
  const int size = comm.size(), rank = comm.rank();
  for (DType dtype : kDtypes) {
    for (int64_t n : kSizes) {
      Tensor in = make_values(dtype, rank, n * size, device);
      Tensor out = Tensor::zeros({n}, dtype, device);
      comm.reduce_scatter(in, out, ReduceOp::Sum);
      std::vector<double> got = out.to_vector<double>();
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(got[i], sum_over_ranks(dtype, size, rank * n + i)) << label(dtype, n) << " element " << i;
      }
    }
  }
}

inline void broadcast_copies_the_roots_tensor(Communicator& comm, Device device) {
  const int root = comm.size() - 1;
  for (DType dtype : kDtypes) {
    for (int64_t n : kSizes) {
      Tensor tensor = make_values(dtype, comm.rank(), n, device);
      comm.broadcast(tensor, root);
      std::vector<double> got = tensor.to_vector<double>();
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], value(dtype, root, i)) << label(dtype, n);
    }
  }
}

inline void send_recv_around_a_ring(Communicator& comm, Device device) {
  const int size = comm.size(), rank = comm.rank();
  if (size < 2) GTEST_SKIP() << "a ring of send/recv needs at least 2 ranks, group '" << comm.name() << "' has 1";
  int next = (rank + 1) % size;
  int previous = (rank + size - 1) % size;
  for (int64_t n : kSizes) {
    Tensor mine = make_values(DType::F32, rank, n, device);
    Tensor received = Tensor::zeros({n}, DType::F32, device);
    // Even ranks send first, odd ranks receive first: no rank waits on a blocked sender.
    if (rank % 2 == 0) {
      comm.send(mine, next, 7);
      comm.recv(received, previous, 7);
    } else {
      comm.recv(received, previous, 7);
      comm.send(mine, next, 7);
    }
    std::vector<double> got = received.to_vector<double>();
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], value(DType::F32, previous, i)) << "n=" << n;
  }
}

// Every rank sends to both neighbours and receives from both in one batch (Megatron's
// send_forward_backward_recv_forward_backward): with blocking calls every rank would sit in its
// first send. The large size is past MPI's eager limit, so a send really waits for its receive.
// With 1 or 2 ranks both neighbours are the same rank; the "backward" message is posted second
// on both sides, so even tagless matching (NCCL) pairs them right.
inline void batch_send_recv_exchanges_with_both_neighbours(Communicator& comm, Device device) {
  const int size = comm.size(), rank = comm.rank();
  const int next = (rank + 1) % size, previous = (rank + size - 1) % size;
  for (DType dtype : {DType::F32, DType::BF16, DType::I64}) {
    for (int64_t n : {int64_t(1), int64_t(7), int64_t(1001), int64_t(100003)}) {
      Tensor forward = make_values(dtype, rank, n, device);
      Tensor backward = make_values(dtype, rank + size, n, device);  // told apart from `forward`
      Tensor from_previous = Tensor::zeros({n}, dtype, device), from_next = Tensor::zeros({n}, dtype, device);
      auto work = comm.batch_send_recv({P2pOp::send(forward, next, 1), P2pOp::send(backward, previous, 2),
                                        P2pOp::recv(from_previous, previous, 1), P2pOp::recv(from_next, next, 2)});
      work->wait();
      work->wait();  // waiting twice is harmless
      EXPECT_TRUE(work->is_completed());
      std::vector<double> got_previous = from_previous.to_vector<double>(), got_next = from_next.to_vector<double>();
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(got_previous[i], value(dtype, previous, i)) << label(dtype, n) << " from rank " << previous;
        ASSERT_EQ(got_next[i], value(dtype, next + size, i)) << label(dtype, n) << " from rank " << next;
      }
    }
  }
}

// Several messages to one peer in one batch, and over consecutive batches, arrive in the order
// they were posted; a polled handle and a dropped one finish their receives too.
inline void batch_send_recv_keeps_posting_order(Communicator& comm, Device device) {
  const int size = comm.size(), rank = comm.rank();
  const int next = (rank + 1) % size, previous = (rank + size - 1) % size;
  constexpr int kMessages = 3;
  constexpr int64_t n = 5;
  std::vector<Tensor> received;
  for (int batch = 0; batch < 2; ++batch) {
    std::vector<P2pOp> ops;
    for (int k = 0; k < kMessages; ++k) {
      ops.push_back(P2pOp::send(Tensor::full({n}, rank * 100 + batch * 10 + k, DType::F64, device), next));
      received.push_back(Tensor::zeros({n}, DType::F64, device));
      ops.push_back(P2pOp::recv(received.back(), previous));
    }
    auto work = comm.batch_send_recv(std::move(ops));
    if (batch == 0) {
      while (!work->is_completed()) {
      }
    } else {
      work.reset();
    }
  }
  for (int batch = 0; batch < 2; ++batch) {
    for (int k = 0; k < kMessages; ++k) {
      EXPECT_EQ(received[batch * kMessages + k].to_vector<double>(),
                std::vector<double>(n, previous * 100 + batch * 10 + k))
          << "batch " << batch << " message " << k;
    }
  }
  comm.batch_send_recv({})->wait();  // nothing to do: done at once
}

inline void all_to_all_transposes_blocks(Communicator& comm, Device device) {
  const int size = comm.size(), rank = comm.rank();
  for (int64_t n : kSizes) {
    // Block q of rank r's input holds r * 1000000 + q * 10000 + i, with n rows of 2 columns.
    std::vector<int64_t> in_values;
    for (int q = 0; q < size; ++q) {
      for (int64_t i = 0; i < n * 2; ++i) in_values.push_back(rank * 1000000 + q * 10000 + i);
    }
    Tensor in = Tensor::from_vector(in_values, {n * size, 2}).to(device);
    Tensor out = Tensor::zeros({n * size, 2}, DType::I64, device);
    comm.all_to_all(in, out);
    std::vector<int64_t> got = out.to_vector<int64_t>();
    for (int q = 0; q < size; ++q) {
      for (int64_t i = 0; i < n * 2; ++i) {
        ASSERT_EQ(got[q * n * 2 + i], q * 1000000 + rank * 10000 + i) << "n=" << n;
      }
    }
  }
}

inline void async_handles_complete_with_the_same_results(Communicator& comm, Device device) {
  const int size = comm.size(), rank = comm.rank();
  const int64_t n = 1001;
  for (DType dtype : {DType::F32, DType::BF16, DType::I64}) {
    Tensor reduced = make_values(dtype, rank, n, device);
    Tensor gathered = Tensor::zeros({n * size}, dtype, device);
    Tensor scattered = Tensor::zeros({n}, dtype, device);
    Tensor gather_in = make_values(dtype, rank, n, device);
    Tensor scatter_in = make_values(dtype, rank, n * size, device);
    auto reduce_work = comm.all_reduce_async(reduced, ReduceOp::Sum);
    auto gather_work = comm.all_gather_async(gather_in, gathered);
    auto scatter_work = comm.reduce_scatter_async(scatter_in, scattered, ReduceOp::Max);
    while (!reduce_work->is_completed()) {
    }
    gather_work->wait();
    scatter_work->wait();
    scatter_work->wait();  // waiting twice is harmless
    EXPECT_TRUE(gather_work->is_completed());
    std::vector<double> sum = reduced.to_vector<double>(), gather = gathered.to_vector<double>(),
                        max = scattered.to_vector<double>();
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(sum[i], sum_over_ranks(dtype, size, i)) << dtype_name(dtype);
      ASSERT_EQ(max[i], value(dtype, size - 1, rank * n + i)) << dtype_name(dtype);
      for (int q = 0; q < size; ++q) ASSERT_EQ(gather[q * n + i], value(dtype, q, i));
    }
  }
}

inline void dropped_handle_still_finishes_the_output(Communicator& comm, Device device) {
  Tensor tensor = make_values(DType::BF16, comm.rank(), 7, device);
  comm.all_reduce_async(tensor, ReduceOp::Avg).reset();
  std::vector<double> got = tensor.to_vector<double>();
  for (int64_t i = 0; i < 7; ++i) {
    ASSERT_EQ(got[i], sum_over_ranks(DType::BF16, comm.size(), i) / comm.size()) << "element " << i;
  }
}

inline void split_group_reduces_only_over_its_members(Communicator& comm, Device device) {
  const int size = comm.size(), rank = comm.rank();
  auto parity = comm.split(rank % 2, rank, "parity");
  EXPECT_EQ(parity->name(), "parity");
  EXPECT_EQ(parity->device(), device);
  EXPECT_EQ(parity->size(), (size + 1 - rank % 2) / 2);
  EXPECT_EQ(parity->rank(), rank / 2);
  Tensor tensor = Tensor::full({3}, rank + 1.0, DType::F64, device);
  parity->all_reduce(tensor, ReduceOp::Sum);
  double expected = 0;
  for (int r = rank % 2; r < size; r += 2) expected += r + 1.0;
  EXPECT_EQ(tensor.to_vector<double>(), std::vector<double>(3, expected));
}

// The message of the Error `call` throws, or "no error".
template <typename Call>
std::string error_message(Call&& call) {
  try {
    call();
  } catch (const Error& error) {
    return error.what();
  }
  return "no error";
}

// Every rank makes the same mistake, so every rank throws before communicating.
inline void bad_arguments_name_the_op_group_and_rank(Communicator& comm, Device device) {
  const int size = comm.size();
  std::string rank_text = "rank " + std::to_string(comm.rank()) + " of " + std::to_string(size);
  std::string group_text = "on group '" + comm.name() + "'";
  Tensor strided = Tensor::zeros({4, 4}, DType::F32, device).transpose(0, 1);
  std::string not_contiguous = error_message([&] { comm.all_reduce(strided, ReduceOp::Sum); });
  EXPECT_NE(not_contiguous.find("all_reduce " + group_text + " (" + rank_text), std::string::npos) << not_contiguous;
  EXPECT_NE(not_contiguous.find("not contiguous"), std::string::npos) << not_contiguous;

  Tensor in = Tensor::zeros({3}, DType::F32, device);
  Tensor wrong_out = Tensor::zeros({3 * size + 1}, DType::F32, device);
  std::string gather = error_message([&] { comm.all_gather(in, wrong_out); });
  EXPECT_NE(gather.find("all_gather " + group_text), std::string::npos) << gather;

  Tensor odd = Tensor::zeros({size * 3 + 1}, DType::F32, device);
  Tensor out = Tensor::zeros({3}, DType::F32, device);
  std::string scatter = error_message([&] { comm.reduce_scatter(odd, out, ReduceOp::Sum); });
  // One rank divides every size: the output shape is what is wrong then.
  EXPECT_NE(scatter.find(size > 1 ? "not divisible by the group size" : "reduce_scatter " + group_text),
            std::string::npos)
      << scatter;

  Tensor ints = Tensor::zeros({3}, DType::I32, device);
  std::string average = error_message([&] { comm.all_reduce(ints, ReduceOp::Avg); });
  EXPECT_NE(average.find("avg needs a floating dtype"), std::string::npos) << average;

  Tensor flags = Tensor::zeros({3}, DType::Bool, device);
  std::string boolean = error_message([&] { comm.all_reduce(flags, ReduceOp::Max); });
  EXPECT_NE(boolean.find("cannot reduce a bool tensor"), std::string::npos) << boolean;

  std::string peer = error_message([&] { comm.send(in, size, 0); });
  EXPECT_NE(peer.find("outside the group"), std::string::npos) << peer;

  std::string batch_peer = error_message([&] { comm.batch_send_recv({P2pOp::recv(in, 0), P2pOp::send(in, -1)}); });
  EXPECT_NE(batch_peer.find("batch_send_recv " + group_text + " (" + rank_text + "): send 1 names peer rank -1"),
            std::string::npos)
      << batch_peer;
  std::string batch_tensor = error_message([&] { comm.batch_send_recv({P2pOp::send(strided, 0)}); });
  EXPECT_NE(batch_tensor.find("send 0 tensor of shape"), std::string::npos) << batch_tensor;

  std::string color = error_message([&] { comm.split(-1, 0, "nobody"); });
  EXPECT_NE(color.find("color must be >= 0"), std::string::npos) << color;
  comm.barrier();
}

}  // namespace tessera::testing::communicator_suite
