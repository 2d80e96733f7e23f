// Memory per GPU of a training layout, predicted from the model's shape alone (nothing is
// allocated), in the terms `tessera train` reports and measures:
//   - parameters, gradients, optimizer state and communication buffers: the tensors
//     DistributedDataParallel / DistributedOptimizer / FsdpOptimizer / AdamW allocate, byte for
//     byte: bf16 parameters, f32 gradients (the DDP buffer, its buckets padded to a multiple of
//     dp; ZeRO-2 keeps its 1/dp shard, ZeRO-3 per-unit shards), f32 master + two moments (whole
//     for stage 0; 1/dp of the padded buffer for ZeRO-1/2; of the padded units for ZeRO-3), and
//     the largest transient bucket or unit buffers (ZeroMemoryReport::communication);
//   - activations: what Tessera's autograd keeps per layer (below), times the micro-batches a
//     pipeline stage holds at its peak (the schedule's peak_live_activations), plus the logits
//     and their gradient on the last stage;
//   - frozen models (DPO's reference, PPO's reference and reward) and PPO's rollout KV cache;
//   - a fragmentation margin (GpuSpec::fragmentation of the live bytes): the caching allocator's
//     peak exceeds the live tensors.
// The estimate is for the pipeline stage that needs the most (the first holds the embedding, the
// last the head and logits).
//
// Activations of one layer per token (16-bit, h hidden, kv key/value width, f MLP width, t tp):
// the layer input and the residual after attention, 2h each (sharded over t with sequence
// parallelism), the two norm outputs the column-parallel GEMMs save, 2h each (whole: under
// sequence parallelism they are the all-gathered copies), q/k/v, the attention output, fc1's
// output and the activation's output, 2 bytes each sharded over t, and f32 statistics (norm rstd,
// attention log-sum-exp). Fused attention keeps no [s, s] scores, so Korthikanti et al.'s 5as/h
// term is absent and selective recomputation would change nothing. Full recomputation keeps the
// layer input only, plus one layer's whole set while that layer is recomputed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "autoconfig/hardware.h"
#include "autoconfig/layout.h"
#include "models/transformer_config.h"
#include "parallel/pipeline_layout.h"

namespace tessera::autoconfig {

// One parameter tensor of a rank, in the order of GptModel::parameters() (GptPipelineStage: chunk
// after chunk); `unit` is its FSDP unit (0 embedding, 1..L the layers, L + 1 the head).
struct ParameterTensor {
  int64_t numel = 0;
  size_t unit = 0;
};

// The parameter tensors pipeline stage `stage` of `layout` holds under tensor parallelism `tp`.
std::vector<ParameterTensor> rank_parameters(const TransformerConfig& model, int tp, const PipelineLayout& layout,
                                             int stage);

// Bytes per rank of the persistent training state, as ZeroMemoryReport measures it (bf16
// parameters, f32 gradients). `zero_stage` 0 is DDP + AdamW (or one process).
struct StateBytes {
  int64_t parameters = 0;
  int64_t gradients = 0;
  int64_t optimizer_state = 0;
  int64_t communication = 0;
};
StateBytes training_state_bytes(const std::vector<ParameterTensor>& parameters, int zero_stage, int dp,
                                double bucket_size_mb, int fsdp_prefetch);

// Activation bytes one transformer layer keeps for `tokens` tokens (micro batch x sequence) on a
// tp rank, as described in the header comment; `recompute` Full keeps only the layer input.
double layer_activation_bytes(const TransformerConfig& model, int64_t tokens, int tp, bool sequence_parallel,
                              Recompute recompute);

// Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models" (2022),
// Table 2: activation bytes per transformer layer with 16-bit activations and dropout, for
// sequence s, micro batch b, hidden h, heads a, tensor parallel t: sbh(34 + 5as/h) without
// parallelism, sbh(10 + 24/t + 5as/(ht)) with tp, sbh/t (34 + 5as/h) with tp + sp, the 5as/h
// term dropped by selective recomputation, 2sbh with full recomputation.
double korthikanti_layer_activation_bytes(double s, double b, double h, double a, double t, bool sequence_parallel,
                                          Recompute recompute);

struct MemoryEstimate {
  int stage = 0;  // the pipeline stage this is for (the one needing the most)
  double parameters = 0, gradients = 0, optimizer_state = 0, communication = 0;
  double activations = 0;
  double frozen = 0;  // frozen models' parameters, KV caches
  double fragmentation = 0;
  double live() const { return parameters + gradients + optimizer_state + communication + activations + frozen; }
  double peak() const { return live() + fragmentation; }  // what the allocator's peak should read
};

// Throws when the candidate's pipeline split or schedule is invalid (layout_search only passes valid ones).
MemoryEstimate estimate_memory(const Job& job, const Candidate& candidate, const GpuSpec& gpu);

}  // namespace tessera::autoconfig
