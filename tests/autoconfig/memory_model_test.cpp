// The auto-configurator's memory model (autoconfig/memory_model.h) against independent numbers:
// Korthikanti et al.'s activation formulas on their GPT-3 case, a hand count of Tessera's saved
// activations, TransformerConfig::parameter_count and the single-process model's own tensors,
// the ZeRO paper's per-stage formulas, and the peaks `tessera train` measured on one H100
// (issue 13's notes; the within-10% bar of the issue). CPU ranks check the state bytes against
// the real allocations in tests/mpi/autoconfig_memory_test.cpp.
#include "autoconfig/memory_model.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <utility>
#include <vector>

#include "models/gpt_model.h"

namespace tessera::autoconfig {
namespace {

constexpr double kGiB = double(int64_t{1} << 30);

GpuSpec h100() { return load_gpu_spec("h100-80gb", default_hardware_dir()); }

Job one_gpu_job(const std::string& preset, int64_t micro_batch, int64_t seq) {
  Job job;
  job.model = transformer_preset(preset);
  job.seq_length = seq;
  job.global_batch_size = micro_batch;
  return job;
}

Candidate single(int64_t micro_batch, Recompute recompute = Recompute::None) {
  Candidate c;
  c.micro_batch_size = micro_batch;
  c.recompute = recompute;
  return c;
}

// GPT-3 175B (a = 96, h = 12288, s = 2048), the paper's running example: 5as/h = 80, and
// selective recomputation keeps 34 of the 34 + 80 units per sbh, "a 70% reduction".
TEST(KorthikantiFormula, Gpt3PublishedCase) {
  const double s = 2048, b = 1, h = 12288, a = 96, sbh = s * b * h;
  EXPECT_DOUBLE_EQ(korthikanti_layer_activation_bytes(s, b, h, a, 1, false, Recompute::None), sbh * (34 + 80));
  EXPECT_DOUBLE_EQ(korthikanti_layer_activation_bytes(s, b, h, a, 1, false, Recompute::Selective), sbh * 34);
  EXPECT_NEAR(1 - 34.0 / 114.0, 0.70, 0.005);
  // t = 8 (the paper's tensor-parallel size for GPT-3): tp alone 10 + 24/8 + 80/8 = 23;
  // tp + sp 114 / 8 = 14.25; tp + sp + selective 34 / 8 = 4.25; full recomputation 2.
  EXPECT_DOUBLE_EQ(korthikanti_layer_activation_bytes(s, b, h, a, 8, false, Recompute::None), sbh * 23);
  EXPECT_DOUBLE_EQ(korthikanti_layer_activation_bytes(s, b, h, a, 8, true, Recompute::None), sbh * 14.25);
  EXPECT_DOUBLE_EQ(korthikanti_layer_activation_bytes(s, b, h, a, 8, true, Recompute::Selective), sbh * 4.25);
  EXPECT_DOUBLE_EQ(korthikanti_layer_activation_bytes(s, b, h, a, 8, true, Recompute::Full), sbh * 2);
}

// GPT-2 124M per token per layer: input, residual, two norm outputs 2h each; q, k, v 6h; attention
// output 2h; fc1 and GELU outputs 8h each: 32h bytes; plus LayerNorm mean/rstd (2 norms x 2 x 4
// bytes) and the log-sum-exp (4 bytes x 12 heads).
TEST(TesseraActivations, HandCountOfGpt2Layer) {
  const TransformerConfig m = transformer_preset("gpt2-124m");
  // bf16: input 2h, residual 2h, two norm outputs 4h; sharded by tp: q/k/v 6h, attention output
  // 2h, fc1's output 8h (GELU's output is not kept: fc2 recomputes it); stats 16 + 4 per head.
  const double h = 768, per_token = 24 * h + 16 + 48;
  EXPECT_DOUBLE_EQ(layer_activation_bytes(m, 1000, 1, false, Recompute::None), 1000 * per_token);
  // tp 4 without sp: the 4h of norm outputs and 4h of input + residual stay whole, 16h shards.
  EXPECT_DOUBLE_EQ(layer_activation_bytes(m, 1000, 4, false, Recompute::None), 1000 * (8 * h + 4 * h + 16 + 12));
  // with sp the input and residual shard too.
  EXPECT_DOUBLE_EQ(layer_activation_bytes(m, 1000, 4, true, Recompute::None), 1000 * (5 * h + 4 * h + 16 + 12));
  // Full recomputation keeps the 2h input (sharded by sp).
  EXPECT_DOUBLE_EQ(layer_activation_bytes(m, 1000, 4, false, Recompute::Full), 1000 * 2 * h);
  EXPECT_DOUBLE_EQ(layer_activation_bytes(m, 1000, 4, true, Recompute::Full), 1000 * 2 * h / 4);
}

TEST(RankParameters, WholeModelMatchesParameterCountForEveryPreset) {
  for (const std::string& name : transformer_preset_names()) {
    const TransformerConfig m = transformer_preset(name);
    int64_t sum = 0;
    for (const ParameterTensor& p : rank_parameters(m, 1, even_pipeline_layout(m.num_layers, 1, 1), 0)) sum += p.numel;
    EXPECT_EQ(sum, m.parameter_count()) << name;
  }
}

TEST(RankParameters, SizesAndOrderMatchTheModelsTensors) {
  for (const char* name : {"llama-tiny", "gpt2-124m"}) {
    TransformerConfig m = transformer_preset(name);
    m.num_layers = 2;
    m.hidden_size = 64;  // small enough to build quickly; the vocabulary and the flavour stay
    m.num_attention_heads = m.num_query_groups = 4;
    m.ffn_hidden_size = 96;
    GptModel model(m, 1);
    std::vector<int64_t> built, predicted;
    for (const Tensor& p : model.parameters()) built.push_back(p.numel());
    for (const ParameterTensor& p : rank_parameters(m, 1, even_pipeline_layout(2, 1, 1), 0))
      predicted.push_back(p.numel);
    EXPECT_EQ(predicted, built) << name;
  }
}

// Rajbhandari et al. (ZeRO), with Tessera's f32 gradients: bf16 parameters 2 psi, gradients 4 psi,
// Adam 12 psi; stage 1 shards the 12, stage 2 also the 4, stage 3 all three. 4 x 10^6 elements in
// one bucket and one unit, a multiple of N: no padding.
TEST(StateBytes, ZeroPaperFormulas) {
  const int64_t psi = 4'000'000;
  const std::vector<ParameterTensor> one_tensor = {{psi, 1}};
  for (int n : {1, 4, 8}) {
    SCOPED_TRACE(n);
    StateBytes s0 = training_state_bytes(one_tensor, 0, n, 40.0, 1);
    EXPECT_EQ(s0.parameters + s0.gradients + s0.optimizer_state, 18 * psi);
    StateBytes s1 = training_state_bytes(one_tensor, 1, n, 40.0, 1);
    EXPECT_EQ(s1.parameters + s1.gradients + s1.optimizer_state, 2 * psi + 4 * psi + 12 * psi / n);
    StateBytes s2 = training_state_bytes(one_tensor, 2, n, 40.0, 1);
    EXPECT_EQ(s2.parameters + s2.gradients + s2.optimizer_state, 2 * psi + 16 * psi / n);
    StateBytes s3 = training_state_bytes(one_tensor, 3, n, 40.0, 1);
    EXPECT_EQ(s3.parameters + s3.gradients + s3.optimizer_state, 18 * psi / n);
  }
}

// Buckets close at >= 4 elements here (16 bytes); each is padded to a multiple of dp = 4:
// reversed [3, 2, 5, 1] -> buckets {1, 5} = 6 -> 8 and {2, 3} = 5 -> 8.
TEST(StateBytes, BucketPaddingFollowsDdp) {
  const std::vector<ParameterTensor> tensors = {{3, 0}, {2, 0}, {5, 0}, {1, 0}};
  const double bucket_mb = 16.0 / double(1 << 20);
  StateBytes s1 = training_state_bytes(tensors, 1, 4, bucket_mb, 1);
  EXPECT_EQ(s1.gradients, 16 * 4);
  EXPECT_EQ(s1.optimizer_state, 16 / 4 * 12);
  StateBytes s0 = training_state_bytes(tensors, 0, 4, bucket_mb, 1);
  EXPECT_EQ(s0.gradients, 16 * 4);
  EXPECT_EQ(s0.optimizer_state, 11 * 12);  // AdamW keeps state per parameter, unpadded
}

// Issue 13's notes: `tessera train` on one H100, bf16, full step: GPT-2 124M B16 T1024 peaked at
// 10.03 GiB, Llama-3.2-1B B4 T2048 at 34.0 GiB. The bar: within 10%.
// Peaks measured by `tessera train` (eager) on one H100: GPT-2 124M at T 1024, global batch 64,
// micro batches 4 to 64 (`tessera autoconfig --measure`, docs/autoconfig.md), and the Llama-1B
// recipe at B4 T2048.
TEST(EstimateMemory, WithinTenPercentOfMeasuredH100Peaks) {
  const GpuSpec gpu = h100();
  const std::vector<std::pair<int64_t, double>> gpt2 = {{4, 3.96}, {8, 5.59}, {16, 8.85}, {32, 15.38}, {64, 28.44}};
  for (const auto& [micro_batch, measured] : gpt2) {
    const double predicted = estimate_memory(one_gpu_job("gpt2-124m", 64, 1024), single(micro_batch), gpu).peak() / kGiB;
    std::printf("gpt2-124m micro batch %ld: predicted %.2f GiB, measured %.2f\n", long(micro_batch), predicted, measured);
    EXPECT_NEAR(predicted, measured, 0.1 * measured) << "micro batch " << micro_batch;
  }
  EXPECT_NEAR(estimate_memory(one_gpu_job("llama3-1b", 4, 2048), single(4), gpu).peak() / kGiB, 34.0, 3.4);
}

TEST(EstimateMemory, RecomputationAndMicroBatchMoveActivationsOnly) {
  const GpuSpec gpu = h100();
  const Job job = one_gpu_job("llama3-1b", 8, 2048);
  const MemoryEstimate none = estimate_memory(job, single(4), gpu),
                       full = estimate_memory(job, single(4, Recompute::Full), gpu);
  const MemoryEstimate doubled = estimate_memory(job, single(8), gpu);
  EXPECT_EQ(none.parameters + none.gradients + none.optimizer_state,
            full.parameters + full.gradients + full.optimizer_state);
  // Full: every layer keeps its input, one layer at a time is recomputed whole; the head is unchanged.
  const double layer = layer_activation_bytes(job.model, 4 * 2048, 1, false, Recompute::None);
  const double input = layer_activation_bytes(job.model, 4 * 2048, 1, false, Recompute::Full);
  EXPECT_DOUBLE_EQ(full.activations, none.activations - 16 * layer + 16 * input + layer);
  EXPECT_DOUBLE_EQ(doubled.activations, 2 * none.activations);
}

// Post-training: LoRA trains only the adapters over a bf16 base; DPO adds a frozen bf16 reference
// and runs two sequences per pair; PPO trains actor and critic and holds two frozen models.
TEST(EstimateMemory, PostTrainingWorkloads) {
  const GpuSpec gpu = h100();
  Job job = one_gpu_job("llama3-8b", 1, 2048);
  const Candidate c = single(1);
  const MemoryEstimate pretrain = estimate_memory(job, c, gpu);
  const double psi = double(job.model.parameter_count());
  EXPECT_DOUBLE_EQ(pretrain.parameters, 2 * psi);

  job.workload = Workload::Lora;
  job.lora_rank = 16;
  const MemoryEstimate lora = estimate_memory(job, c, gpu);
  // Per layer: r (in + out) for qkv 4096 -> 6144, proj 4096 -> 4096, fc1 4096 -> 28672, fc2 14336 -> 4096.
  const double adapters = 32.0 * 16 * ((4096 + 6144) + (4096 + 4096) + (4096 + 28672) + (14336 + 4096));
  EXPECT_DOUBLE_EQ(lora.parameters, 2 * psi + 2 * adapters);
  EXPECT_DOUBLE_EQ(lora.gradients, 4 * adapters);
  EXPECT_DOUBLE_EQ(lora.optimizer_state, 12 * adapters);

  job.workload = Workload::Dpo;
  const MemoryEstimate dpo = estimate_memory(job, c, gpu);
  EXPECT_DOUBLE_EQ(dpo.frozen, 2 * psi);
  EXPECT_DOUBLE_EQ(dpo.optimizer_state, pretrain.optimizer_state);
  EXPECT_GT(dpo.activations, 1.9 * pretrain.activations);

  job.workload = Workload::Ppo;
  const MemoryEstimate ppo = estimate_memory(job, c, gpu);
  EXPECT_DOUBLE_EQ(ppo.optimizer_state, 2 * pretrain.optimizer_state);
  // Reference + reward in bf16, plus the KV cache: 2048 tokens x 32 layers x k and v of 8 x 128 in bf16.
  EXPECT_DOUBLE_EQ(ppo.frozen, 4 * psi + 2048.0 * 32 * 2 * 2 * 1024);
}

// With pipelines the first stage holds the most micro-batches (1F1B: pp of them).
TEST(EstimateMemory, PipelineFirstStageHoldsPpMicroBatches) {
  Job job = one_gpu_job("llama3-8b", 1, 4096);
  job.gpus = 4;
  job.global_batch_size = 16;
  Candidate c = single(1);
  c.pp = 4;
  const MemoryEstimate e = estimate_memory(job, c, h100());
  const double layer = layer_activation_bytes(job.model, 4096, 1, false, Recompute::None);
  // Stage 0: 8 layers x 4 live micro-batches, no head (the last stage's logits are smaller here).
  EXPECT_EQ(e.stage, 0);
  EXPECT_DOUBLE_EQ(e.activations, 4 * 8 * layer);
}

}  // namespace
}  // namespace tessera::autoconfig
