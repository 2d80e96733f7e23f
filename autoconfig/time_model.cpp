#include "autoconfig/time_model.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autoconfig/memory_model.h"
#include "core/check.h"
#include "parallel/pipeline_schedule.h"
#include "parallel/pipeline_simulator.h"

namespace tessera::autoconfig {

namespace {

constexpr double kActBytes = 2;    // bf16
constexpr double kGradBytes = 4;   // f32 gradients
constexpr double kParamBytes = 2;  // bf16 parameters
constexpr double kAdamBytesMoved =
    34;  // fused AdamW per parameter: gradient, master, moments in and out, bf16 copy, zeroing
constexpr double kCrossEntropyPasses = 4;  // logits: softmax read, loss, gradient write, gradient read

double log_distance(double a, double b) { return std::abs(std::log(a) - std::log(b)); }

int64_t fc1_width(const TransformerConfig& m) {
  return m.activation == Activation::SwiGLU ? 2 * m.ffn_hidden_size : m.ffn_hidden_size;
}

// Forward and backward seconds of one micro-batch through one stage's parts, and how much of
// them is tensor-parallel communication.
struct PassCost {
  double forward = 0, backward = 0;
  double tp_communication = 0;
};

// A linear layer Y[m, n] = X[m, k] W[k, n]: its forward, and its data- and weight-gradient GEMMs
// (LoRA's frozen base skips the weight gradient).
PassCost linear(const GpuSpec& gpu, int64_t m, int64_t n, int64_t k, bool weight_gradient) {
  return {gemm_seconds(gpu, m, n, k), gemm_seconds(gpu, m, k, n) + (weight_gradient ? gemm_seconds(gpu, k, n, m) : 0),
          0.0};
}

// One transformer layer on a tp rank, for `tokens` tokens of micro batch `batch`.
PassCost layer_cost(const Job& job, const Candidate& c, const GpuSpec& gpu, int64_t batch, int64_t tokens) {
  const TransformerConfig& m = job.model;
  const int64_t h = m.hidden_size, t = c.tp, qkv = (m.num_attention_heads + 2 * m.num_query_groups) * m.head_dim();
  const bool wgrad = job.workload != Workload::Lora;
  PassCost cost;
  for (PassCost part :
       {linear(gpu, tokens, qkv / t, h, wgrad), linear(gpu, tokens, h, m.num_attention_heads * m.head_dim() / t, wgrad),
        linear(gpu, tokens, fc1_width(m) / t, h, wgrad), linear(gpu, tokens, h, m.ffn_hidden_size / t, wgrad)}) {
    cost.forward += part.forward;
    cost.backward += part.backward;
  }
  const int64_t heads = m.num_attention_heads / t;
  cost.forward += attention_seconds(gpu, batch, heads, job.seq_length, m.head_dim(), false);
  cost.backward += attention_seconds(gpu, batch, heads, job.seq_length, m.head_dim(), true);
  // Memory-bound kernels: passes over the layer's activations, a third in forward.
  const double replicated = c.sequence_parallel ? double(t) : 1.0;
  const double per_token =
      kActBytes * (2 * double(h) / replicated +
                   double(qkv + m.num_attention_heads * m.head_dim() + fc1_width(m) + m.ffn_hidden_size) / double(t));
  const double elementwise = gpu.elementwise_passes * per_token * double(tokens) / (gpu.hbm_gbs * 1e9);
  cost.forward += elementwise / 3;
  cost.backward += 2 * elementwise / 3;
  // Tensor parallelism: two all-reduces (all-gather + reduce-scatter pairs with sp) each way.
  if (t > 1) {
    const LinkSpec& link = group_link(gpu, c.tp, 1, job.gpus_per_node);
    const double collective = all_reduce_seconds(double(tokens) * double(h) * kActBytes, c.tp, link);
    cost.forward += 2 * collective;
    cost.backward += 2 * collective;
    cost.tp_communication = 4 * collective;
  }
  return cost;
}

// The output layer and cross-entropy over this rank's vocabulary shard.
PassCost head_cost(const Job& job, const Candidate& c, const GpuSpec& gpu, int64_t tokens) {
  const TransformerConfig& m = job.model;
  const int64_t vocab = m.padded_vocab_size(c.tp) / c.tp;
  PassCost cost = linear(gpu, tokens, vocab, m.hidden_size, job.workload != Workload::Lora);
  const double cross_entropy = kCrossEntropyPasses * kActBytes * double(vocab) * double(tokens) / (gpu.hbm_gbs * 1e9);
  cost.forward += cross_entropy / 2;
  cost.backward += cross_entropy / 2;
  return cost;
}

// Model FLOPs per token the workload runs: forward + backward (3 forward) of the trained model;
// LoRA's frozen base computes no weight gradients (2 forward); DPO adds the reference model's
// forward (4 forward); PPO trains actor and critic and runs reference and reward forward (8).
double workload_flops_per_token(const Job& job) {
  const double training = job.model.training_flops_per_token(job.seq_length);
  switch (job.workload) {
    case Workload::Lora:
      return training * 2 / 3;
    case Workload::Dpo:
      return training * 4 / 3;
    case Workload::Ppo:
      return training * 8 / 3;
    default:
      return training;
  }
}

}  // namespace

double gemm_seconds(const GpuSpec& gpu, int64_t m, int64_t n, int64_t k) {
  TS_CHECK(!gpu.gemm.empty(), gpu.file, ": no GEMM table");
  const GemmPoint* nearest = nullptr;
  double best = std::numeric_limits<double>::infinity();
  for (const GemmPoint& p : gpu.gemm) {
    double d = log_distance(double(m), double(p.m)) + log_distance(double(n), double(p.n)) +
               log_distance(double(k), double(p.k));
    if (d < best) best = d, nearest = &p;
  }
  const double flops = 2.0 * double(m) * double(n) * double(k);
  const double bytes = kActBytes * double(m * k + k * n + m * n);
  return std::max(flops / (nearest->tflops * 1e12), bytes / (gpu.hbm_gbs * 1e9)) + gpu.kernel_overhead_us * 1e-6;
}

double attention_seconds(const GpuSpec& gpu, int64_t batch, int64_t heads, int64_t seq, int64_t head_dim,
                         bool backward) {
  TS_CHECK(!gpu.attention.empty(), gpu.file, ": no attention table");
  const AttentionPoint* nearest = nullptr;
  double best = std::numeric_limits<double>::infinity();
  for (const AttentionPoint& p : gpu.attention) {
    // Head dim weighs most (it sets the kernel's arithmetic intensity), then sequence, then batch x heads.
    double d = log_distance(double(seq), double(p.seq)) + 2 * log_distance(double(head_dim), double(p.head_dim)) +
               0.25 * log_distance(double(batch * heads), double(p.batch * p.heads));
    if (d < best) best = d, nearest = &p;
  }
  // bench/attention_torch.py's count: 4 B H T^2 D / 2 forward (causal), 2.5x that backward.
  const double forward_flops = 2.0 * double(batch) * double(heads) * double(seq) * double(seq) * double(head_dim);
  const double seconds = backward ? 2.5 * forward_flops / (nearest->backward_tflops * 1e12)
                                  : forward_flops / (nearest->forward_tflops * 1e12);
  return seconds + gpu.kernel_overhead_us * 1e-6;
}

const LinkSpec& group_link(const GpuSpec& gpu, int size, int stride, int gpus_per_node) {
  return int64_t(size) * stride <= gpus_per_node ? gpu.nvlink : gpu.network;
}

double all_reduce_seconds(double bytes, int n, const LinkSpec& link) {
  if (n <= 1) return 0;
  return 2.0 * double(n - 1) / double(n) * bytes / (link.bandwidth_gbs * 1e9) +
         2.0 * double(n - 1) * link.latency_us * 1e-6;
}

double all_gather_seconds(double bytes, int n, const LinkSpec& link) { return all_reduce_seconds(bytes, n, link) / 2; }

double p2p_seconds(double bytes, const LinkSpec& link) {
  return bytes / (link.bandwidth_gbs * 1e9) + link.latency_us * 1e-6;
}

TimeEstimate estimate_step_time(const Job& job, const Candidate& c, const GpuSpec& gpu) {
  const TransformerConfig& m = job.model;
  const int64_t num_microbatches = c.num_microbatches(job);
  TS_CHECK(num_microbatches >= 1, "estimate_step_time: global batch ", job.global_batch_size, " below micro batch ",
           c.micro_batch_size, " x dp ", c.dp);
  const int64_t sequences = c.micro_batch_size * (job.workload == Workload::Dpo ? 2 : 1);
  const int64_t tokens = sequences * job.seq_length;
  const PipelineLayout layout = even_pipeline_layout(m.num_layers, c.pp, c.vpp);

  const PassCost layer = layer_cost(job, c, gpu, sequences, tokens);
  const PassCost head = head_cost(job, c, gpu, tokens);
  TimeEstimate e;
  // The slowest stage sets the pace (the simulator takes one cost for all).
  double recompute_per_microbatch = 0, tp_per_microbatch = 0;
  for (int stage = 0; stage < c.pp; ++stage) {
    size_t layers = 0;
    for (int chunk = 0; chunk < c.vpp; ++chunk) layers += layout.layers(stage, chunk).size();
    const double n = double(layers);
    // Full recomputation reruns the layers' forward (its two tp collectives included) in backward.
    const double recompute = c.recompute == Recompute::Full ? n * layer.forward : 0.0;
    double forward = n * layer.forward, backward = n * layer.backward + recompute;
    if (stage == c.pp - 1) {
      forward += head.forward;
      backward += head.backward;
    }
    if (forward + backward > e.forward + e.backward) {
      e.forward = forward;
      e.backward = backward;
      recompute_per_microbatch = recompute;
      tp_per_microbatch = n * layer.tp_communication * (c.recompute == Recompute::Full ? 1.5 : 1.0);
    }
  }
  // DPO's reference model and PPO's frozen models run forward only; PPO trains actor and critic.
  double extra_forward = 0;
  if (job.workload == Workload::Dpo) extra_forward = e.forward;
  if (job.workload == Workload::Ppo) {
    extra_forward = 2 * e.forward;  // reference and reward model
    e.forward *= 2;                 // actor and critic
    e.backward *= 2;
  }
  e.recompute = recompute_per_microbatch * double(num_microbatches);
  e.tp_communication = tp_per_microbatch * double(num_microbatches);

  const double replicated = c.sequence_parallel ? double(c.tp) : 1.0;
  if (c.pp == 1) {
    e.pipeline = double(num_microbatches) * (e.forward + e.backward + extra_forward);
  } else {
    const LinkSpec& link = group_link(gpu, c.pp, c.tp * c.dp, job.gpus_per_node);
    PipelineCosts costs{(e.forward + extra_forward) / c.vpp, e.backward / c.vpp,
                        p2p_seconds(double(tokens) * double(m.hidden_size) * kActBytes / replicated, link)};
    PipelineScheduleOptions options{c.vpp > 1 ? PipelineScheduleKind::Interleaved1F1B : PipelineScheduleKind::OneFOneB,
                                    c.pp, c.vpp, int(num_microbatches)};
    const SimulationResult simulated = simulate_pipeline(build_pipeline_schedule(options), costs);
    e.pipeline = simulated.stats.makespan;
    e.bubble_fraction = simulated.stats.mean_bubble_fraction;
  }

  // Data parallelism over the rank's parameters (the widest stage's count: the first or last).
  double numel = 0;
  for (int stage = 0; stage < c.pp; ++stage) {
    double stage_numel = 0;
    for (const ParameterTensor& p : rank_parameters(m, c.tp, layout, stage)) stage_numel += double(p.numel);
    numel = std::max(numel, stage_numel);
  }
  if (job.workload == Workload::Ppo) numel *= 2;
  const double trained = job.workload == Workload::Lora ? 0.0 : numel;
  if (c.dp > 1 && trained > 0) {
    const LinkSpec& link = group_link(gpu, c.dp, c.tp, job.gpus_per_node);
    const double grads = trained * kGradBytes, params = trained * kParamBytes;
    const double window = c.pp == 1 ? e.backward : 0.0;  // the last micro-batch's backward hides it
    const double tail = all_reduce_seconds(std::min(grads, job.ddp_bucket_size_mb * double(1 << 20)), c.dp, link);
    const double m_count = double(num_microbatches);
    switch (c.zero_stage) {
      case 0:
        e.dp_exposed = std::max(tail, all_reduce_seconds(grads, c.dp, link) - window);
        break;
      case 1:
        e.dp_exposed =
            std::max(tail, all_gather_seconds(grads, c.dp, link) - window) + all_gather_seconds(params, c.dp, link);
        break;
      case 2:
        e.dp_exposed = m_count * std::max(tail, all_gather_seconds(grads, c.dp, link) - e.backward) +
                       all_gather_seconds(params, c.dp, link);
        break;
      default: {
        const double gather = all_gather_seconds(params, c.dp, link), scatter = all_gather_seconds(grads, c.dp, link);
        e.dp_exposed =
            m_count * (std::max(0.0, gather - e.forward) + std::max(0.0, gather + scatter - e.backward)) + tail;
      }
    }
  }
  const double optimizer_params = job.workload == Workload::Lora ? 0.0 : (c.zero_stage >= 1 ? numel / c.dp : numel);
  e.optimizer = optimizer_params * kAdamBytesMoved / (gpu.hbm_gbs * 1e9);
  e.step = e.pipeline + e.dp_exposed + e.optimizer;

  const double step_tokens =
      double(job.global_batch_size) * double(job.seq_length) * (job.workload == Workload::Dpo ? 2 : 1);
  e.tokens_per_second = step_tokens / e.step;
  e.mfu = workload_flops_per_token(job) * step_tokens / (e.step * double(job.gpus) * gpu.peak_bf16_tflops * 1e12);
  return e;
}

}  // namespace tessera::autoconfig
