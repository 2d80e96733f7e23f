// Every ZeRO stage on one GPU (a one-rank NCCL world): a small bf16 Llama-shaped GptModel trained
// 6 steps with DDP + AdamW (stage 0), ZeRO-1 and ZeRO-2 (DistributedOptimizer over DDP's
// reduce-scatter / sharded gradients) and ZeRO-3 (FSDP + FsdpOptimizer), with clipping that
// engages, once with f32 gradient buffers and once with bf16 ones. With one rank every stage computes the same update from the same gradients, so the
// losses and gradient norms must match stage 0's to f32 rounding of the reductions (1e-4
// relative, bf16 parameters); the ZeRO-3 run also ends with its full parameters released.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/ops/ops.h"
#include "models/gpt_model.h"
#include "optim/adamw.h"
#include "optim/distributed_optimizer.h"
#include "optim/fsdp_optimizer.h"
#include "optim/grad_norm.h"
#include "parallel/distributed_data_parallel.h"
#include "parallel/fsdp.h"
#include "parallel/nccl_communicator.h"
#include "support/gpu.h"

namespace tessera {
namespace {

const Device kGpu = Device::cuda(0);
constexpr int kSteps = 6;
constexpr int64_t kBatch = 4, kSeq = 64;
constexpr double kClip = 0.5, kTolerance = 1e-4;

TransformerConfig config() {
  TransformerConfig c = transformer_preset("llama-tiny");
  c.num_layers = 3;
  c.max_position_embeddings = kSeq;
  return c;
}

LmBatch batch(int step, int64_t vocab) {
  std::mt19937_64 rng(100 + uint64_t(step));
  std::vector<int64_t> values(static_cast<size_t>(kBatch * (kSeq + 1)));
  for (int64_t& v : values) v = static_cast<int64_t>(rng() % uint64_t(vocab));
  Tensor tokens = Tensor::from_vector(values, Shape{kBatch, kSeq + 1});
  return {tokens.narrow(1, 0, kSeq).contiguous().to(kGpu), tokens.narrow(1, 1, kSeq).contiguous().to(kGpu), Tensor()};
}

struct TrainedRun {
  std::vector<double> losses, grad_norms;
};

TrainedRun train(Communicator& world, int stage, DType grad_dtype) {
  const TransformerConfig c = config();
  GptModel model(c, 7, ParamOptions{DType::BF16, kGpu});
  AdamWOptions adamw{.lr = 3e-3, .weight_decay = 0.1};
  std::unique_ptr<DistributedDataParallel> ddp;
  std::unique_ptr<AdamW> plain;
  std::unique_ptr<DistributedOptimizer> zero;
  std::unique_ptr<FullyShardedDataParallel> fsdp;
  std::unique_ptr<FsdpOptimizer> zero3;
  if (stage == 3) {
    fsdp = std::make_unique<FullyShardedDataParallel>(model.fsdp_units(), world, FsdpOptions{.prefetch = 1, .grad_dtype = grad_dtype});
    model.set_fsdp(fsdp.get());
    zero3 = std::make_unique<FsdpOptimizer>(*fsdp, adamw);
  } else {
    GradSync sync = stage == 0 ? GradSync::AllReduce : stage == 1 ? GradSync::ReduceScatter : GradSync::Sharded;
    ddp = std::make_unique<DistributedDataParallel>(model.parameters(), world, DdpOptions{.grad_sync = sync, .grad_dtype = grad_dtype});
    if (stage == 0) {
      plain = std::make_unique<AdamW>(model.parameters(), adamw);
    } else {
      zero = std::make_unique<DistributedOptimizer>(*ddp, adamw);
    }
  }
  TrainedRun run;
  for (int step = 0; step < kSteps; ++step) {
    if (fsdp) fsdp->zero_grad();
    if (ddp) ddp->zero_grad();
    Tensor loss = model.loss(batch(step, c.vocab_size));
    loss.backward();
    if (fsdp) fsdp->finish_grad_sync();
    if (ddp) ddp->finish_grad_sync();
    run.losses.push_back(loss.item());
    const double norm = std::sqrt(zero3  ? zero3->grad_norm_squared()
                                  : zero ? zero->grad_norm_squared()
                                         : grad_norm_squared(model.parameters()));
    run.grad_norms.push_back(norm);
    const double factor = clip_factor(norm, kClip);
    if (zero3) zero3->step(factor);
    if (zero) zero->step(factor);
    if (plain) plain->step(factor);
  }
  if (fsdp) {
    EXPECT_TRUE(model.parameters().front().storage()->released()) << "ZeRO-3 keeps only shards";
  }
  return run;
}

TEST(ZeroStagesGpu, EveryStageMatchesStageZeroOnOneGpu) {
  TS_REQUIRE_GPU();
  NcclCommunicator world(0);
  // f32 gradient buffers (Megatron's main_grad), then bf16 ones (grad_reduce_in_bf16).
  for (DType grad_dtype : {DType::F32, DType::BF16}) {
    const TrainedRun reference = train(world, 0, grad_dtype);
    EXPECT_LT(reference.losses.back(), reference.losses.front()) << "stage 0 should learn";
    for (int stage = 1; stage <= 3; ++stage) {
      const TrainedRun got = train(world, stage, grad_dtype);
      for (int s = 0; s < kSteps; ++s) {
        EXPECT_NEAR(got.losses[s], reference.losses[s], kTolerance * reference.losses[s])
            << "stage " << stage << " " << grad_dtype;
        EXPECT_NEAR(got.grad_norms[s], reference.grad_norms[s], kTolerance * reference.grad_norms[s])
            << "stage " << stage << " step " << s << " " << grad_dtype;
        EXPECT_GT(reference.grad_norms[s], kClip) << "clipping should engage";
      }
    }
  }
}

}  // namespace
}  // namespace tessera
