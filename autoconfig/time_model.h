// Step time of a training layout, predicted from the hardware tables:
//   - compute: every GEMM of a layer (forward, and the data- and weight-gradient GEMMs of
//     backward) at the throughput the GEMM table gives its shape, capped by the roofline of HBM
//     bandwidth; causal attention at the attention table's forward/backward throughput; the
//     memory-bound rest (norms, activations, residuals, rope, cross-entropy) as
//     GpuSpec::elementwise_passes passes over the layer's activations at HBM bandwidth; every
//     kernel pays kernel_overhead_us. Full recomputation repeats the layer forward in backward.
//   - communication, alpha-beta per collective on the link the group spans (NVLink when the
//     group's ranks share a node, the network otherwise; ranks in Megatron's order, tp fastest,
//     then dp, then pp): ring all-reduce 2(n-1)/n x bytes / bandwidth + 2(n-1) alpha, all-gather
//     and reduce-scatter half of that. Tensor parallelism: 4 all-reduces (or all-gather +
//     reduce-scatter pairs with sequence parallelism) of the layer's activations per micro-batch,
//     not overlapped. Data parallelism: the gradient all-reduce (ZeRO-1: reduce-scatter, then the
//     parameters' all-gather after the step; ZeRO-2 a reduce-scatter per micro-batch; ZeRO-3 also
//     two parameter all-gathers per micro-batch), overlapped with the backward pass it follows
//     (with pipelines Tessera reduces after the whole schedule: not overlapped).
//   - the pipeline bubble: the trainer's schedule (1F1B, or interleaved 1F1B with vpp > 1) run
//     by parallel/pipeline_simulator with these forward, backward and p2p costs.
//   - the optimizer: one fused AdamW pass over the rank's state at HBM bandwidth.
#pragma once

#include <cstdint>

#include "autoconfig/hardware.h"
#include "autoconfig/layout.h"

namespace tessera::autoconfig {

// Seconds of one bf16 GEMM C[m, n] = A[m, k] B[k, n]: the table's throughput at the nearest
// shape (log distance), never above what HBM can feed, plus the kernel overhead.
double gemm_seconds(const GpuSpec& gpu, int64_t m, int64_t n, int64_t k);
// Seconds of causal attention over [batch, seq, heads, head_dim], forward or backward.
double attention_seconds(const GpuSpec& gpu, int64_t batch, int64_t heads, int64_t seq, int64_t head_dim,
                         bool backward);

// The link a group of `size` ranks spaced `stride` apart uses with `gpus_per_node` GPUs a node.
const LinkSpec& group_link(const GpuSpec& gpu, int size, int stride, int gpus_per_node);
// Ring collectives of `bytes` (the whole buffer) over n ranks.
double all_reduce_seconds(double bytes, int n, const LinkSpec& link);
double all_gather_seconds(double bytes, int n, const LinkSpec& link);  // = reduce-scatter
double p2p_seconds(double bytes, const LinkSpec& link);

struct TimeEstimate {
  double forward = 0, backward = 0;  // one micro-batch on the slowest stage, tp communication included
  double tp_communication = 0;       // of which tensor-parallel collectives (whole step)
  double recompute = 0;              // of which recomputation (whole step)
  double pipeline = 0;               // the schedule's makespan (compute + bubble + p2p)
  double bubble_fraction = 0;        // the simulator's mean idle share of the makespan
  double dp_exposed = 0;             // data-parallel communication not hidden behind compute
  double optimizer = 0;
  double step = 0;
  double tokens_per_second = 0;
  double mfu = 0;  // the workload's model FLOPs (docs/flops.md; LoRA 2/3, DPO 4/3, PPO 8/3 of
                   // pretraining's per token) / (step x GPUs x peak)
};

TimeEstimate estimate_step_time(const Job& job, const Candidate& candidate, const GpuSpec& gpu);

}  // namespace tessera::autoconfig
