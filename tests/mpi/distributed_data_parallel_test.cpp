// DistributedDataParallel over the world as the dp group (np 2 and 4). A three-layer MLP built
// from core/nn Linear layers (same seed on every rank); rank q takes block q of a global batch
// whose rows come from a formula. After backward + finish_grad_sync every rank's gradients must
// equal the single-rank full-batch gradient, computed on every rank by an identical model
// without DDP (relative error <= 1e-5 of the largest entry): with tiny buckets (one per
// parameter), a middle size and one huge bucket; with sum and avg reduction; with three
// micro-batches of gradient accumulation (no collective before the last backward, counted by a
// Communicator wrapper); with bf16 parameters (f32 buffer: against the f64 sum of each rank's
// local bf16 gradients, a tolerance bf16 reduction could not meet; with grad_dtype bf16 in every
// mode, against the same sum within bf16 rounding, in half the bytes). A hook-order test shows the
// first bucket's all-reduce is issued before the last parameter's gradient is ready (and, as the
// control, not with one bucket). Misuse is refused with a one-line reason.
#include "parallel/distributed_data_parallel.h"

#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/check.h"
#include "core/nn/layers.h"
#include "core/ops/ops.h"
#include "parallel/mpi_communicator.h"

namespace tessera {
namespace {

// Forwards to an inner communicator, logging every all-reduce it is asked to start.
class CountingCommunicator final : public Communicator {
 public:
  CountingCommunicator(Communicator& inner, std::vector<std::string>& events) : inner_(inner), events_(events) {}

  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  const std::string& name() const override { return inner_.name(); }
  Device device() const override { return inner_.device(); }
  std::unique_ptr<Communicator> split(int color, int key, std::string name) const override {
    return inner_.split(color, key, std::move(name));
  }
  void all_reduce(Tensor& tensor, ReduceOp op) override { all_reduce_async(tensor, op)->wait(); }
  void all_gather(const Tensor& in, Tensor& out) override { inner_.all_gather(in, out); }
  void reduce_scatter(const Tensor& in, Tensor& out, ReduceOp op) override { inner_.reduce_scatter(in, out, op); }
  void broadcast(Tensor& tensor, int root) override { inner_.broadcast(tensor, root); }
  void send(const Tensor& tensor, int peer, int tag) override { inner_.send(tensor, peer, tag); }
  void recv(Tensor& tensor, int peer, int tag) override { inner_.recv(tensor, peer, tag); }
  void all_to_all(const Tensor& in, Tensor& out) override { inner_.all_to_all(in, out); }
  void barrier() override { inner_.barrier(); }
  std::unique_ptr<WorkHandle> all_reduce_async(Tensor& tensor, ReduceOp op) override {
    events_.push_back("all_reduce");
    ++all_reduces_;
    return inner_.all_reduce_async(tensor, op);
  }
  std::unique_ptr<WorkHandle> all_gather_async(const Tensor& in, Tensor& out) override {
    return inner_.all_gather_async(in, out);
  }
  std::unique_ptr<WorkHandle> reduce_scatter_async(const Tensor& in, Tensor& out, ReduceOp op) override {
    return inner_.reduce_scatter_async(in, out, op);
  }
  std::unique_ptr<WorkHandle> batch_send_recv(std::vector<P2pOp> ops) override {
    return inner_.batch_send_recv(std::move(ops));
  }

  int all_reduces() const { return all_reduces_; }

 private:
  Communicator& inner_;
  std::vector<std::string>& events_;
  int all_reduces_ = 0;
};

constexpr int64_t kIn = 5, kHidden = 6, kOut = 3, kRows = 3;  // rows per block (one rank's micro-batch)

class Mlp : public Module {
 public:
  explicit Mlp(DType dtype, bool with_unused_layer = false) {
    Generator generator(7);
    ParamOptions options{dtype, Device::cpu()};
    auto fc1 = std::make_shared<Linear>(kIn, kHidden, true, generator, 0.5, options);
    auto fc2 = std::make_shared<Linear>(kHidden, kHidden, true, generator, 0.5, options);
    auto fc3 = std::make_shared<Linear>(kHidden, kOut, true, generator, 0.5, options);
    // Drawn last (the others keep their values) but registered first, so it is placed last in the
    // buffer; never used in forward.
    if (with_unused_layer) register_module("unused", std::make_shared<Linear>(2, 2, true, generator, 0.5, options));
    fc1_ = register_module("fc1", fc1);
    fc2_ = register_module("fc2", fc2);
    fc3_ = register_module("fc3", fc3);
  }
  Tensor forward(const Tensor& x) const { return fc3_->forward(tanh(fc2_->forward(tanh(fc1_->forward(x))))); }

 private:
  std::shared_ptr<Linear> fc1_, fc2_, fc3_;
};

// Rows [first_block * kRows, (first_block + blocks) * kRows) of the global batch: inputs and targets.
Tensor batch_values(int64_t first_block, int64_t blocks, int64_t width, int salt, DType dtype) {
  std::vector<float> values;
  for (int64_t row = first_block * kRows; row < (first_block + blocks) * kRows; ++row)
    for (int64_t j = 0; j < width; ++j) values.push_back(float(((row * 7 + j * 3 + salt) % 13) - 6) / 4.0f);
  return Tensor::from_vector(values, {blocks * kRows, width}).to(dtype);
}

// Sum over the rows of the blocks of the squared error, times `factor`.
Tensor block_loss(const Mlp& model, int64_t first_block, int64_t blocks, double factor, DType dtype) {
  Tensor out = model.forward(batch_values(first_block, blocks, kIn, 1, dtype));
  return scale(sum(square(out - batch_values(first_block, blocks, kOut, 5, dtype))), factor);
}

// Gradients of the mean squared error over `blocks` blocks from block 0, by one model on one rank.
std::vector<std::vector<double>> full_batch_gradients(int64_t blocks) {
  Mlp model(DType::F32);
  block_loss(model, 0, blocks, 1.0 / double(blocks * kRows), DType::F32).backward();
  std::vector<std::vector<double>> grads;
  for (const Tensor& p : model.parameters()) {
    std::vector<float> g = p.grad().to_vector<float>();
    grads.emplace_back(g.begin(), g.end());
  }
  return grads;
}

void expect_gradients_match(const std::vector<Tensor>& parameters, const std::vector<std::vector<double>>& expected) {
  ASSERT_EQ(parameters.size(), expected.size());
  for (size_t i = 0; i < parameters.size(); ++i) {
    ASSERT_EQ(parameters[i].grad().dtype(), DType::F32) << "parameter " << i;
    std::vector<float> got = parameters[i].grad().to_vector<float>();
    ASSERT_EQ(got.size(), expected[i].size());
    double largest = 0.0, error = 0.0;
    for (size_t j = 0; j < got.size(); ++j) {
      largest = std::max(largest, std::abs(expected[i][j]));
      error = std::max(error, std::abs(double(got[j]) - expected[i][j]));
    }
    ASSERT_GT(largest, 0.0) << "parameter " << i << " has an all-zero reference gradient";
    EXPECT_LE(error / largest, 1e-5) << "parameter " << i;
  }
}

class DistributedDataParallelTest : public ::testing::Test {
 protected:
  MpiCommunicator world_{MPI_COMM_WORLD, "dp"};
  std::vector<std::string> events_;
  CountingCommunicator dp_{world_, events_};
  int rank_ = world_.rank();
  int size_ = world_.size();

  // One step: this rank's block of a global batch of `size_` blocks, loss scaled for `reduction`.
  void train_step(const Mlp& model, DistributedDataParallel& ddp, ReduceOp reduction) {
    double factor = reduction == ReduceOp::Sum ? 1.0 / double(size_ * kRows) : 1.0 / double(kRows);
    block_loss(model, rank_, 1, factor, DType::F32).backward();
    ddp.finish_grad_sync();
  }
};

TEST_F(DistributedDataParallelTest, GradientsEqualTheFullBatchForEveryBucketSize) {
  const std::vector<std::vector<double>> expected = full_batch_gradients(size_);
  // Tiny: one bucket per parameter. Middle: about half the gradients per bucket. Huge: one bucket.
  int64_t total = 0;
  for (const Tensor& p : Mlp(DType::F32).parameters()) total += p.numel();
  // (bucket_size_mb, buckets): tiny, one per parameter; half the gradients (the first bucket,
  // fc3 and fc2, closes past half); huge, one.
  const std::vector<std::pair<double, size_t>> cases = {
      {1e-9, 6}, {double(total) * 2.0 / double(1 << 20), 2}, {1024.0, 1}};
  for (const auto& [mb, expected_buckets] : cases) {
    SCOPED_TRACE("bucket_size_mb " + std::to_string(mb));
    Mlp model(DType::F32);
    DistributedDataParallel ddp(model.parameters(), dp_, {.bucket_size_mb = mb});
    size_t buckets = ddp.buckets().size();
    EXPECT_EQ(buckets, expected_buckets);
    int before = dp_.all_reduces();
    train_step(model, ddp, ReduceOp::Sum);
    EXPECT_EQ(dp_.all_reduces() - before, int(buckets)) << "one all-reduce per bucket";
    expect_gradients_match(model.parameters(), expected);
  }
}

TEST_F(DistributedDataParallelTest, AvgReductionOfPerRankMeansEqualsTheFullBatchMean) {
  Mlp model(DType::F32);
  DistributedDataParallel ddp(model.parameters(), dp_, {.bucket_size_mb = 1e-9, .reduction = ReduceOp::Avg});
  train_step(model, ddp, ReduceOp::Avg);
  expect_gradients_match(model.parameters(), full_batch_gradients(size_));
}

TEST_F(DistributedDataParallelTest, SecondStepAfterZeroGradMatchesAgain) {
  Mlp model(DType::F32);
  DistributedDataParallel ddp(model.parameters(), dp_, {.bucket_size_mb = 1e-9});
  train_step(model, ddp, ReduceOp::Sum);
  ddp.zero_grad();
  for (float g : ddp.grad_buffer().to_vector<float>()) ASSERT_EQ(g, 0.0f);
  train_step(model, ddp, ReduceOp::Sum);
  expect_gradients_match(model.parameters(), full_batch_gradients(size_));
}

TEST_F(DistributedDataParallelTest, AccumulationCommunicatesOnlyAfterTheLastMicroBatch) {
  constexpr int kMicro = 3;
  Mlp model(DType::F32);
  DistributedDataParallel ddp(model.parameters(), dp_, {.bucket_size_mb = 1e-9});
  const double factor = 1.0 / double(kMicro * size_ * kRows);  // the global batch's row count
  for (int micro = 0; micro < kMicro; ++micro) {
    int64_t block = int64_t{micro} * size_ + rank_;  // Megatron's order: micro-batch m is blocks m*dp ..
    if (micro < kMicro - 1) {
      auto scope = ddp.no_sync();
      EXPECT_FALSE(ddp.grad_sync_enabled());
      block_loss(model, block, 1, factor, DType::F32).backward();
      EXPECT_EQ(dp_.all_reduces(), 0) << "micro-batch " << micro << " communicated";
    } else {
      EXPECT_TRUE(ddp.grad_sync_enabled()) << "no_sync must restore grad sync";
      block_loss(model, block, 1, factor, DType::F32).backward();
      EXPECT_GT(dp_.all_reduces(), 0) << "the last backward must start buckets while it runs";
    }
  }
  ddp.finish_grad_sync();
  EXPECT_EQ(dp_.all_reduces(), int(ddp.buckets().size()));
  expect_gradients_match(model.parameters(), full_batch_gradients(kMicro * size_));
}

// Each rank's local bf16 gradient of the bf16 Mlp (blocks 0 .. ranks - 1), computed here by an
// identical model with f32 gradient buffers, summed in f64.
std::vector<std::vector<double>> local_bf16_gradient_sum(int ranks, double factor) {
  Mlp reference(DType::BF16);
  std::vector<Tensor> params = reference.parameters();
  std::vector<std::vector<double>> expected(params.size());
  for (size_t i = 0; i < params.size(); ++i) expected[i].assign(size_t(params[i].numel()), 0.0);
  for (int q = 0; q < ranks; ++q) {
    for (const Tensor& p : params) p.set_grad(Tensor::zeros(p.shape(), DType::F32));
    block_loss(reference, q, 1, factor, DType::BF16).backward();
    for (size_t i = 0; i < params.size(); ++i) {
      std::vector<float> g = params[i].grad().to_vector<float>();
      for (size_t j = 0; j < g.size(); ++j) expected[i][j] += g[j];
    }
  }
  return expected;
}

TEST_F(DistributedDataParallelTest, Bf16ParametersReduceInTheF32Buffer) {
  Mlp model(DType::BF16);
  DistributedDataParallel ddp(model.parameters(), dp_, {.bucket_size_mb = 1e-9});
  EXPECT_EQ(ddp.grad_buffer().dtype(), DType::F32);
  const double factor = 1.0 / double(size_ * kRows);
  block_loss(model, rank_, 1, factor, DType::BF16).backward();
  ddp.finish_grad_sync();
  expect_gradients_match(model.parameters(), local_bf16_gradient_sum(size_, factor));
}

// grad_dtype bf16 (--grad-reduce-in-bf16): in every mode the persistent gradients are bf16 (half
// the bytes of the f32 buffer) and each reduced element of this rank's shard is the sum of the
// ranks' local bf16 gradients rounded to bf16: within 2^-8 of it (one rounding is 2^-9), plus
// 1e-6 of the largest entry for the communicator's f32 partial sums.
TEST_F(DistributedDataParallelTest, Bf16GradDtypeReducesInBf16InEveryMode) {
  const double factor = 1.0 / double(size_ * kRows);
  const std::vector<std::vector<double>> expected = local_bf16_gradient_sum(size_, factor);
  double largest = 0.0;
  for (const std::vector<double>& g : expected)
    for (double v : g) largest = std::max(largest, std::abs(v));
  for (GradSync mode : {GradSync::AllReduce, GradSync::ReduceScatter, GradSync::Sharded}) {
    SCOPED_TRACE("grad sync mode " + std::to_string(int(mode)));
    Mlp model(DType::BF16);
    Mlp f32_grads(DType::BF16);
    DistributedDataParallel ddp(model.parameters(), dp_,
                                {.bucket_size_mb = 1e-9, .grad_sync = mode, .grad_dtype = DType::BF16});
    DistributedDataParallel f32_ddp(f32_grads.parameters(), world_, {.bucket_size_mb = 1e-9, .grad_sync = mode});
    EXPECT_EQ(2 * ddp.grad_buffer_bytes(), f32_ddp.grad_buffer_bytes());
    block_loss(model, rank_, 1, factor, DType::BF16).backward();
    ddp.finish_grad_sync();

    // The reference laid out as the buffer (padding zero).
    const GradBucket& last = ddp.buckets().back();
    std::vector<double> flat(size_t(last.offset + last.numel), 0.0);
    for (size_t i = 0; i < expected.size(); ++i)
      std::copy(expected[i].begin(), expected[i].end(), flat.begin() + ddp.grad_ranges()[i].offset);
    int64_t checked = 0;
    for (size_t b = 0; b < ddp.buckets().size(); ++b) {
      Tensor shard = ddp.bucket_grad_shard(b);
      ASSERT_EQ(shard.dtype(), DType::BF16) << "bucket " << b;
      std::vector<float> got = shard.to(DType::F32).to_vector<float>();
      const GradRange range = ddp.bucket_shard(b);
      for (int64_t k = 0; k < range.numel; ++k, ++checked) {
        const double want = flat[size_t(range.offset + k)];
        EXPECT_LE(std::abs(double(got[size_t(k)]) - want), std::ldexp(std::abs(want), -8) + 1e-6 * largest)
            << "bucket " << b << " element " << k;
      }
    }
    EXPECT_GT(checked, 0);
  }
}

TEST_F(DistributedDataParallelTest, BucketsAreContiguousReverseOrderedAndPaddedToTheGroupSize) {
  Mlp model(DType::F32);
  std::vector<Tensor> params = model.parameters();
  int64_t total = 0;
  for (const Tensor& p : params) total += p.numel();
  DistributedDataParallel ddp(params, dp_, {.bucket_size_mb = double(total) * 2.0 / double(1 << 20)});
  int64_t at = 0;
  size_t next_parameter = params.size();  // reverse order
  for (size_t b = 0; b < ddp.buckets().size(); ++b) {
    const GradBucket& bucket = ddp.buckets()[b];
    EXPECT_EQ(bucket.offset, at) << "bucket " << b;
    EXPECT_EQ(bucket.numel % size_, 0) << "bucket " << b << " is not padded to the group size";
    int64_t inside = bucket.offset;
    for (size_t i : bucket.parameters) {
      EXPECT_EQ(i, --next_parameter);
      const GradRange& range = ddp.grad_ranges()[i];
      EXPECT_EQ(range.bucket, b);
      EXPECT_EQ(range.offset, inside);
      EXPECT_EQ(range.numel, params[i].numel());
      EXPECT_EQ(params[i].grad().data_ptr(), ddp.grad_buffer().data<float>() + range.offset);
      inside += range.numel;
    }
    EXPECT_LT(bucket.offset + bucket.numel - inside, size_) << "more padding than needed";
    at += bucket.numel;
  }
  EXPECT_EQ(next_parameter, 0u);
  EXPECT_EQ(ddp.grad_buffer().numel(), at);
  EXPECT_EQ(ddp.grad_buffer_bytes(), size_t(at) * sizeof(float));
}

TEST_F(DistributedDataParallelTest, FirstBucketIsIssuedBeforeTheLastGradientIsReady) {
  for (double mb : {1e-9, 1024.0}) {
    Mlp model(DType::F32);
    // Registered before DDP's hooks, so "ready" is logged before DDP reacts to the same gradient.
    for (const Tensor& p : model.parameters())
      p.register_grad_ready_hook([this](const Tensor&) { events_.push_back("ready"); });
    DistributedDataParallel ddp(model.parameters(), dp_, {.bucket_size_mb = mb});
    events_.clear();
    train_step(model, ddp, ReduceOp::Sum);
    auto first_reduce = std::find(events_.begin(), events_.end(), "all_reduce");
    auto last_ready = std::find(events_.rbegin(), events_.rend(), "ready").base() - 1;
    ASSERT_NE(first_reduce, events_.end());
    if (mb < 1.0) {
      EXPECT_LT(first_reduce - events_.begin(), last_ready - events_.begin()) << "no overlap with backward";
    } else {
      EXPECT_GT(first_reduce - events_.begin(), last_ready - events_.begin()) << "one bucket waits for every gradient";
    }
  }
}

TEST_F(DistributedDataParallelTest, ParametersWithoutGradientAreReducedAtFinishAndStayZero) {
  Mlp model(DType::F32, /*with_unused_layer=*/true);
  DistributedDataParallel ddp(model.parameters(), dp_, {.bucket_size_mb = 1e-9});
  train_step(model, ddp, ReduceOp::Sum);
  EXPECT_EQ(dp_.all_reduces(), int(ddp.buckets().size()));
  std::vector<Tensor> params = model.parameters();
  for (size_t i = 0; i < 2; ++i)
    for (float g : params[i].grad().to_vector<float>()) EXPECT_EQ(g, 0.0f) << "unused parameter " << i;
  expect_gradients_match(std::vector<Tensor>(params.begin() + 2, params.end()), full_batch_gradients(size_));
}

std::string error_of(const std::function<void()>& run) {
  try {
    run();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST_F(DistributedDataParallelTest, MisuseIsRefusedWithOneLine) {
  Mlp model(DType::F32);
  DistributedDataParallel ddp(model.parameters(), dp_, {.bucket_size_mb = 1e-9});
  block_loss(model, rank_, 1, 1.0, DType::F32).backward();  // sync on: every bucket starts
  EXPECT_NE(error_of([&] { ddp.zero_grad(); }).find("call finish_grad_sync() first"), std::string::npos);
  std::string twice = error_of([&] { block_loss(model, rank_, 1, 1.0, DType::F32).backward(); });
  EXPECT_NE(twice.find("became ready twice"), std::string::npos) << twice;
  EXPECT_NE(twice.find("no_sync()"), std::string::npos) << twice;
  ddp.finish_grad_sync();  // still collective-consistent after the refusal

  Mlp other(DType::F32);
  std::vector<Tensor> params = other.parameters();
  EXPECT_NE(error_of([&] { DistributedDataParallel(params, dp_, {.bucket_size_mb = 0.0}); }).find("bucket_size_mb"),
            std::string::npos);
  EXPECT_NE(error_of([&] { DistributedDataParallel(params, dp_, {.reduction = ReduceOp::Max}); }).find("sum or avg"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              DistributedDataParallel({params[0], params[0]}, dp_);
            }).find("appears twice"),
            std::string::npos);
  EXPECT_NE(error_of([&] { DistributedDataParallel({Tensor::zeros({2})}, dp_); }).find("requires grad"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              DistributedDataParallel(params, dp_, {.grad_dtype = DType::BF16});
            }).find("grad_dtype bf16 needs every parameter in bf16 but parameter 0 is f32"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              DistributedDataParallel(params, dp_, {.grad_dtype = DType::F64});
            }).find("grad_dtype must be f32 or the parameters' 16-bit dtype"),
            std::string::npos);
}

}  // namespace
}  // namespace tessera
