// CUDA graphs (core/device_graph.h, launcher/micro_batch_graph.h) against eager execution: the
// caching allocator's private pools keep a graph's memory to itself, a replay recomputes from
// inputs updated in place, a capture that synchronizes with the host fails with a clear error
// and leaves the stream usable, and `tessera train` with train.cuda_graph gives the losses and
// gradient norms of the eager run, step by step.
#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include "core/cuda/cuda_backend.h"
#include "core/device_graph.h"
#include "core/memory_stats.h"
#include "core/ops/ops.h"
#include "data/data_test_util.h"
#include "data/indexed_dataset_writer.h"
#include "launcher/recipe.h"
#include "launcher/trainer.h"
#include "support/gpu.h"

namespace tessera {
namespace {

const Device kGpu = Device::cuda(0);

TEST(CudaGraph, PrivatePoolBlocksAreNotHandedOutElsewhere) {
  TS_REQUIRE_GPU();
  CudaCachingAllocator& allocator = cuda_backend(0).caching_allocator();
  const size_t bytes = size_t{3} << 20;
  const int pool = allocator.create_private_pool();
  allocator.use_private_pool(pool);
  void* in_pool = allocator.allocate(bytes)->data();  // freed at once: back to the pool
  allocator.use_private_pool(-1);
  EXPECT_EQ(allocator.private_pool_bytes(pool), CudaCachingAllocator::round_size(bytes));
  const size_t allocated_with_pool = allocator.stats().allocated_bytes;
  {
    std::shared_ptr<Storage> outside = allocator.allocate(bytes);
    EXPECT_NE(outside->data(), in_pool) << "a block of the private pool was handed out outside it";
  }
  allocator.destroy_private_pool(pool);
  EXPECT_EQ(allocator.stats().allocated_bytes + CudaCachingAllocator::round_size(bytes), allocated_with_pool);
  // Destroyed: its block is back in the shared cache (one of the two free blocks of that size).
  std::shared_ptr<Storage> a = allocator.allocate(bytes), b = allocator.allocate(bytes);
  EXPECT_TRUE(a->data() == in_pool || b->data() == in_pool);
}

TEST(CudaGraph, ReplayRecomputesFromInputsUpdatedInPlace) {
  TS_REQUIRE_GPU();
  Generator g(7);
  Tensor x = randn({64, 96}, g, DType::F32).to(kGpu);
  Tensor w = randn({96, 32}, g, DType::F32).to(kGpu);
  Tensor out;
  auto graph = capture_device_graph(kGpu, [&] { out = gelu(add(matmul(x, w), scale(matmul(x, w), 0.5))); });
  for (int replay = 0; replay < 3; ++replay) {
    Tensor host_x = randn({64, 96}, g, DType::F32);
    x.copy_(host_x);
    graph->replay();
    Tensor cpu_w = w.to(Device::cpu());
    Tensor want = gelu(add(matmul(host_x, cpu_w), scale(matmul(host_x, cpu_w), 0.5)));
    EXPECT_LE(testing::relative_error(out.to(Device::cpu()), want), 1e-5) << "replay " << replay;
  }
  EXPECT_GT(graph->pool_bytes(), 0u);
}

TEST(CudaGraph, CaptureThatSynchronizesFailsAndLeavesTheStreamUsable) {
  TS_REQUIRE_GPU();
  Tensor x = Tensor::full({16}, 2.0, DType::F32, kGpu);
  try {
    capture_device_graph(kGpu, [&] { (void)sum(x).item(); });
    FAIL() << "a capture that reads a value on the host succeeded";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA graph capture of the training step failed"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("train.cuda_graph: false"), std::string::npos) << e.what();
  }
  EXPECT_EQ(sum(mul(x, x)).item(), 64.0f);
}

// Cross-entropy's backward writes its gradient over logits nobody else holds: no second
// logits-sized buffer at the peak of the backward.
TEST(CudaGraph, CrossEntropyBackwardReusesTheLogitsBuffer) {
  TS_REQUIRE_GPU();
  Generator g(9);
  Tensor x = randn({4096, 64}, g, DType::BF16).to(kGpu);
  x.set_requires_grad(true);
  Tensor w = randn({64, 8192}, g, DType::BF16).to(kGpu);
  CrossEntropyOptions options;
  options.reduction = LossReduction::Sum;
  Tensor loss = cross_entropy(matmul(x, w), Tensor::zeros({4096}, DType::I64, kGpu), options);
  const size_t logits_bytes = size_t{4096} * 8192 * 2;
  const size_t before = memory_stats(kGpu).in_use_bytes;
  reset_peak_memory(kGpu);
  loss.backward();
  const size_t added = memory_stats(kGpu).peak_bytes - before;
  std::printf("cross-entropy backward: peak adds %.1f MiB over the forward (logits %.1f MiB)\n", added / 1048576.0,
              logits_bytes / 1048576.0);
  EXPECT_LT(added, logits_bytes / 2);
  EXPECT_GT(sum(abs(x.grad().to(DType::F32))).item(), 0.0f);
}

// Training: the same recipe with and without train.cuda_graph, step by step.
class CudaGraphTraining : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no GPU visible";
    IndexedDatasetWriter writer(folder_.file("corpus"), IndexedDType::UInt16);
    std::mt19937 engine(5);
    for (int document = 0; document < 300; ++document) {
      std::vector<int32_t> tokens(8 + engine() % 60);
      for (int32_t& token : tokens) token = static_cast<int32_t>(engine() % 500);
      writer.add_document(tokens);
    }
    writer.finalize();
  }

  TrainResult train(const std::string& model, const std::string& precision, bool graph) {
    std::string yaml = "model:\n" + model + "data:\n  data_path: [" + folder_.file("corpus") +
                       "]\n  split: \"90,10,0\"\n  seq_length: 32\n"
                       "optimizer:\n  lr: 3.0e-3\n  min_lr: 3.0e-4\n  weight_decay: 0.1\n  clip_grad: 1.0\n"
                       "scheduler:\n  lr_warmup_iters: 2\n"
                       "train:\n  micro_batch_size: 4\n  global_batch_size: 8\n  train_iters: 6\n"
                       "  eval_interval: 3\n  eval_iters: 1\n  device: cuda\n  resume: none\n  precision: " +
                       precision + "\n  cuda_graph: " + (graph ? "true" : "false") +
                       "\nlogging:\n  log_interval: 1\n  run_dir: " + folder_.file("runs") + "\n";
    captured_ = false;
    Trainer trainer(train_config_from_recipe(Recipe::parse(yaml, "cuda_graph_test.yaml", {})),
                    [this](const std::string& line) { captured_ |= line.find("cuda graph: captured") == 0; });
    return trainer.run();
  }

  void expect_graph_matches_eager(const std::string& model, const std::string& precision, double tolerance) {
    TrainResult eager = train(model, precision, false);
    EXPECT_FALSE(captured_);
    TrainResult graphed = train(model, precision, true);
    EXPECT_TRUE(captured_) << "no graph was captured";
    ASSERT_EQ(graphed.steps.size(), eager.steps.size());
    for (size_t i = 0; i < eager.steps.size(); ++i) {
      std::printf("step %zu: loss eager %.7f graph %.7f, grad norm eager %.7f graph %.7f\n", i + 1,
                  eager.steps[i].loss, graphed.steps[i].loss, eager.steps[i].grad_norm, graphed.steps[i].grad_norm);
      EXPECT_NEAR(graphed.steps[i].loss, eager.steps[i].loss, tolerance * std::abs(eager.steps[i].loss))
          << "step " << i + 1;
      EXPECT_NEAR(graphed.steps[i].grad_norm, eager.steps[i].grad_norm, tolerance * eager.steps[i].grad_norm)
          << "step " << i + 1;
    }
    ASSERT_EQ(graphed.validation_losses.size(), eager.validation_losses.size());
    for (size_t i = 0; i < eager.validation_losses.size(); ++i)
      EXPECT_NEAR(graphed.validation_losses[i].second, eager.validation_losses[i].second,
                  tolerance * eager.validation_losses[i].second);
  }

  testing::TemporaryFolder folder_;
  bool captured_ = false;
};

const char* kTinyGpt2 =
    "  preset: gpt2-124m\n  num_layers: 2\n  hidden_size: 64\n  num_attention_heads: 4\n"
    "  ffn_hidden_size: 256\n  max_position_embeddings: 64\n";

TEST_F(CudaGraphTraining, Gpt2Bf16MatchesEager) { expect_graph_matches_eager(kTinyGpt2, "bf16", 2e-4); }
TEST_F(CudaGraphTraining, LlamaBf16MatchesEager) { expect_graph_matches_eager("  preset: llama-tiny\n", "bf16", 2e-4); }

}  // namespace
}  // namespace tessera
