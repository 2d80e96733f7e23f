// The auto-configurator's step-time model (autoconfig/time_model.h) against closed forms (the
// alpha-beta ring costs, the roofline of a GEMM, 1F1B's bubble (pp - 1) / (m + pp - 1)) and the
// full-step rates `tessera train` measured on one H100 (issue 13's notes). The H100 table's one
// fitted number (elementwise_passes) was fitted to these two rates, so the check is that one
// parameter explains both within 10%.
#include "autoconfig/time_model.h"

#include <gtest/gtest.h>

#include "autoconfig/memory_model.h"

namespace tessera::autoconfig {
namespace {

GpuSpec h100() { return load_gpu_spec("h100-80gb", default_hardware_dir()); }

Job one_gpu_job(const std::string& preset, int64_t micro_batch, int64_t seq) {
  Job job;
  job.model = transformer_preset(preset);
  job.seq_length = seq;
  job.global_batch_size = micro_batch;
  return job;
}

TEST(AlphaBeta, RingCollectivesClosedForm) {
  const LinkSpec link{100, 10};  // 100 GB/s, 10 us
  EXPECT_DOUBLE_EQ(all_reduce_seconds(1e9, 1, link), 0.0);
  EXPECT_DOUBLE_EQ(all_reduce_seconds(1e9, 8, link), 2.0 * 7 / 8 * 1e9 / 100e9 + 2.0 * 7 * 10e-6);
  EXPECT_DOUBLE_EQ(all_gather_seconds(1e9, 8, link), 7.0 / 8 * 1e9 / 100e9 + 7 * 10e-6);
  EXPECT_DOUBLE_EQ(p2p_seconds(1e6, link), 1e6 / 100e9 + 10e-6);
}

TEST(AlphaBeta, GroupsInsideANodeUseNvlink) {
  const GpuSpec gpu = h100();
  EXPECT_EQ(&group_link(gpu, 8, 1, 8), &gpu.nvlink);   // tp 8 on an 8-GPU node
  EXPECT_EQ(&group_link(gpu, 2, 4, 8), &gpu.nvlink);   // dp 2 over tp 4
  EXPECT_EQ(&group_link(gpu, 4, 4, 8), &gpu.network);  // dp 4 over tp 4 spans two nodes
}

TEST(Gemm, TableShapeAtItsThroughputAndTinyShapesHbmBound) {
  const GpuSpec gpu = h100();
  const double overhead = gpu.kernel_overhead_us * 1e-6;
  const GemmPoint& p = gpu.gemm.front();
  EXPECT_DOUBLE_EQ(gemm_seconds(gpu, p.m, p.n, p.k), 2.0 * double(p.m * p.n * p.k) / (p.tflops * 1e12) + overhead);
  // 8192 x 8192 x 1: 2 flops per 6 bytes moved, far below the roofline's ridge.
  EXPECT_DOUBLE_EQ(gemm_seconds(gpu, 8192, 8192, 1),
                   2.0 * (8192.0 + 8192 + 8192.0 * 8192) / (gpu.hbm_gbs * 1e9) + overhead);
}

TEST(Attention, MeasuredShapeAtItsThroughput) {
  const GpuSpec gpu = h100();
  const AttentionPoint& p = gpu.attention.front();
  const double flops = 2.0 * double(p.batch * p.heads) * double(p.seq * p.seq) * double(p.head_dim);
  const double overhead = gpu.kernel_overhead_us * 1e-6;
  EXPECT_DOUBLE_EQ(attention_seconds(gpu, p.batch, p.heads, p.seq, p.head_dim, false),
                   flops / (p.forward_tflops * 1e12) + overhead);
  EXPECT_DOUBLE_EQ(attention_seconds(gpu, p.batch, p.heads, p.seq, p.head_dim, true),
                   2.5 * flops / (p.backward_tflops * 1e12) + overhead);
}

// Issue 13's notes: GPT-2 124M B16 T1024 437k tokens/s; Llama-3.2-1B B4 T2048 56.0k tokens/s.
TEST(StepTime, WithinTenPercentOfMeasuredH100Rates) {
  const GpuSpec gpu = h100();
  Candidate gpt2;
  gpt2.micro_batch_size = 16;
  EXPECT_NEAR(estimate_step_time(one_gpu_job("gpt2-124m", 16, 1024), gpt2, gpu).tokens_per_second, 437e3, 43.7e3);
  Candidate llama;
  llama.micro_batch_size = 4;
  EXPECT_NEAR(estimate_step_time(one_gpu_job("llama3-1b", 4, 2048), llama, gpu).tokens_per_second, 56.0e3, 5.6e3);
}

TEST(StepTime, MfuIsModelFlopsOverPeak) {
  const GpuSpec gpu = h100();
  const Job job = one_gpu_job("gpt2-124m", 16, 1024);
  Candidate c;
  c.micro_batch_size = 16;
  const TimeEstimate t = estimate_step_time(job, c, gpu);
  EXPECT_NEAR(t.mfu, job.model.training_flops_per_token(1024) * t.tokens_per_second / (gpu.peak_bf16_tflops * 1e12),
              1e-12);
  // LoRA computes no weight gradients of the frozen base: 2 of pretraining's 3 forward-equivalents.
  Job lora = job;
  lora.workload = Workload::Lora;
  const TimeEstimate l = estimate_step_time(lora, c, gpu);
  EXPECT_NEAR(l.mfu,
              job.model.training_flops_per_token(1024) * 2 / 3 * l.tokens_per_second / (gpu.peak_bf16_tflops * 1e12),
              1e-12);
  EXPECT_LT(l.step, t.step);
}

TEST(StepTime, FullRecomputationRepeatsTheForward) {
  const GpuSpec gpu = h100();
  const Job job = one_gpu_job("llama3-1b", 8, 2048);
  Candidate none, full;
  none.micro_batch_size = full.micro_batch_size = 4;
  full.recompute = Recompute::Full;
  const TimeEstimate a = estimate_step_time(job, none, gpu), b = estimate_step_time(job, full, gpu);
  // Two micro-batches; each backward also reruns the layers' forward (not the head's).
  EXPECT_DOUBLE_EQ(b.forward, a.forward);
  EXPECT_NEAR(b.backward - a.backward, b.recompute / 2, 1e-12);
  EXPECT_GT(b.recompute / 2, 0.5 * a.forward);
  EXPECT_LT(b.recompute / 2, a.forward);
  EXPECT_NEAR(b.step - a.step, b.recompute, 1e-12);
}

// Per micro-batch and layer, two all-reduces of the [tokens, hidden] activations forward and two
// backward (all-gather + reduce-scatter pairs of the same volume with sp), on NVLink.
TEST(StepTime, TensorParallelCollectivesPerLayer) {
  const GpuSpec gpu = h100();
  Job job = one_gpu_job("llama3-1b", 4, 2048);
  job.gpus = 2;
  Candidate c;
  c.tp = 2;
  c.sequence_parallel = true;
  c.micro_batch_size = 2;
  const double collective = all_reduce_seconds(2.0 * 2048 * 2048 * 2, 2, gpu.nvlink);
  EXPECT_NEAR(estimate_step_time(job, c, gpu).tp_communication, 2 * 16 * 4 * collective, 1e-12);
}

// 1F1B with equal stage costs idles (pp - 1) / (m + pp - 1) of the makespan; the p2p transfers
// (microseconds against milliseconds of compute) add a little.
TEST(StepTime, PipelineBubbleMatchesOneFOneB) {
  const GpuSpec gpu = h100();
  Job job = one_gpu_job("llama3-8b", 1, 4096);
  job.gpus = 4;
  job.global_batch_size = 12;
  Candidate c;
  c.pp = 4;
  c.micro_batch_size = 1;
  const TimeEstimate t = estimate_step_time(job, c, gpu);
  // The last stage also runs the head, so it is the slowest; the others idle a little more.
  EXPECT_NEAR(t.bubble_fraction, 3.0 / (12 + 3), 0.03);
  c.vpp = 2;  // interleaving shrinks the bubble
  EXPECT_LT(estimate_step_time(job, c, gpu).bubble_fraction, t.bubble_fraction);
}

TEST(StepTime, DataParallelGradientsOverlapTheLastBackward) {
  const GpuSpec gpu = h100();
  Job job = one_gpu_job("llama3-1b", 8, 2048);
  job.gpus = 8;
  job.global_batch_size = 64;
  Candidate c;
  c.dp = 8;
  c.micro_batch_size = 2;
  const TimeEstimate t = estimate_step_time(job, c, gpu);
  const double psi = double(job.model.parameter_count());
  const double all_reduce = all_reduce_seconds(4 * psi, 8, gpu.nvlink);
  const double tail = all_reduce_seconds(40.0 * double(1 << 20), 8, gpu.nvlink);
  EXPECT_DOUBLE_EQ(t.dp_exposed, std::max(tail, all_reduce - t.backward));
}

}  // namespace
}  // namespace tessera::autoconfig
