// The tensor-parallel RNG tracker with the world as the tp group (tp = 2 and 4): dropout masks
// drawn from the default stream are identical on every rank (replicated activations stay
// equal), masks from the model-parallel stream differ between every pair of ranks (compared
// after an all-gather), and both streams are seeded as Megatron seeds them (seed, and
// seed + 2718 + tp_rank). States round-trip; bad names and seeds are refused with one line.
#include <gtest/gtest.h>
#include <mpi.h>

#include <vector>

#include "core/ops/ops.h"
#include "parallel/mpi_communicator.h"
#include "parallel/rng_tracker.h"
#include "tests/mpi/parallel_test_helpers.h"

namespace tessera {
namespace {

using testing::expect_rejected;

constexpr uint64_t kSeed = 1234;
constexpr int64_t kElements = 256;

class RngTrackerTest : public ::testing::Test {
 protected:
  MpiCommunicator tp_{MPI_COMM_WORLD, "tp"};
  int rank_ = tp_.rank();
  int size_ = tp_.size();
};

// 1 where dropout(p = 0.5) keeps an element of ones, 0 where it drops it.
std::vector<float> dropout_mask(Generator& generator) {
  Tensor kept = dropout(Tensor::ones({kElements}), 0.5, generator);
  std::vector<float> mask = kept.to_vector<float>();
  for (float& m : mask) m = m != 0.0f ? 1.0f : 0.0f;
  return mask;
}

// Every rank's mask, in rank order.
std::vector<std::vector<float>> gathered_masks(Communicator& tp, const std::vector<float>& mask) {
  Tensor all = Tensor::empty({tp.size(), kElements});
  tp.all_gather(Tensor::from_vector(mask, {1, kElements}), all);
  std::vector<std::vector<float>> masks;
  for (int q = 0; q < tp.size(); ++q) masks.push_back(all.narrow(0, q, 1).to_vector<float>());
  return masks;
}

TEST_F(RngTrackerTest, DefaultStreamMasksAreIdenticalAcrossRanks) {
  RngTracker tracker(kSeed, rank_);
  std::vector<std::vector<float>> masks = gathered_masks(tp_, dropout_mask(tracker.default_generator()));
  for (int q = 1; q < size_; ++q) EXPECT_EQ(masks[static_cast<size_t>(q)], masks[0]) << "rank " << q;
  Generator plain(kSeed);
  EXPECT_EQ(masks[0], dropout_mask(plain)) << "the default stream is the plain seed's";
}

TEST_F(RngTrackerTest, ModelParallelStreamMasksDifferAcrossRanks) {
  RngTracker tracker(kSeed, rank_);
  std::vector<float> mine = dropout_mask(tracker.fork());
  std::vector<std::vector<float>> masks = gathered_masks(tp_, mine);
  for (int q = 0; q < size_; ++q) {
    for (int r = q + 1; r < size_; ++r)
      EXPECT_NE(masks[static_cast<size_t>(q)], masks[static_cast<size_t>(r)]) << "ranks " << q << " and " << r;
  }
  Generator megatron(kSeed + 2718 + static_cast<uint64_t>(rank_));
  EXPECT_EQ(mine, dropout_mask(megatron)) << "seeded seed + 2718 + tp_rank";
}

TEST_F(RngTrackerTest, StreamsAdvanceIndependentlyAndStatesRoundTrip) {
  RngTracker tracker(kSeed, rank_);
  dropout_mask(tracker.fork());
  EXPECT_EQ(tracker.default_generator().state().offset, 0u) << "a draw advances only its own stream";
  tracker.add("expert-parallel-rng", kSeed + 9999);
  auto saved = tracker.states();
  ASSERT_EQ(saved.size(), 3u);
  std::vector<float> first = dropout_mask(tracker.fork("expert-parallel-rng"));
  tracker.set_states(saved);
  EXPECT_EQ(dropout_mask(tracker.fork("expert-parallel-rng")), first);
  EXPECT_EQ(tracker.fork().state().offset, 1u);
}

TEST_F(RngTrackerTest, BadNamesAndSeedsAreRefused) {
  RngTracker tracker(kSeed, rank_);
  expect_rejected([&] { tracker.add(RngTracker::kModelParallel, 5); }, "a stream named 'model-parallel-rng' already");
  expect_rejected([&] { tracker.add("other", kSeed); }, "is the default stream's");
  expect_rejected([&] { tracker.add("other", kSeed + 2718 + static_cast<uint64_t>(rank_)); },
                  "is already used by 'model-parallel-rng'");
  expect_rejected([&] { tracker.fork("nope"); }, "no stream named 'nope'; known streams: model-parallel-rng");
  expect_rejected([&] { tracker.set_states({{"default", {}}}); },
                  "set_states needs exactly the streams default, model-parallel-rng; got default");
}

}  // namespace
}  // namespace tessera
