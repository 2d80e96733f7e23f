#include "autoconfig/memory_model.h"

#include <algorithm>

#include "core/check.h"
#include "parallel/pipeline_schedule.h"
#include "parallel/pipeline_timeline.h"

namespace tessera::autoconfig {

namespace {

constexpr int64_t kParamBytes = 2;  // bf16 parameters
constexpr int64_t kGradBytes = 4;   // f32 gradients (the DDP buffer / ZeRO shards)
constexpr int64_t kAdamBytes = 12;  // f32 master + exp_avg + exp_avg_sq
constexpr double kActBytes = 2;     // bf16 activations
constexpr double kStatBytes = 4;    // f32 statistics

int64_t round_up(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

int64_t fc1_width(const TransformerConfig& m) {
  return m.activation == Activation::SwiGLU ? 2 * m.ffn_hidden_size : m.ffn_hidden_size;
}

int64_t qkv_width(const TransformerConfig& m) {
  return (m.num_attention_heads + 2 * m.num_query_groups) * m.head_dim();
}

// One transformer layer's tensors in registration order (norm, attention, norm, MLP).
void append_layer(const TransformerConfig& m, int tp, size_t unit, std::vector<ParameterTensor>& out) {
  const int64_t h = m.hidden_size, bias = m.add_bias_linear ? 1 : 0;
  auto add = [&](int64_t numel) {
    if (numel > 0) out.push_back({numel, unit});
  };
  auto norm = [&] {
    add(h);
    if (m.normalization == Normalization::LayerNorm) add(h);
  };
  norm();
  add(qkv_width(m) / tp * h);  // column parallel: output rows sharded, bias too
  add(bias * qkv_width(m) / tp);
  add(h * (m.num_attention_heads * m.head_dim() / tp));  // row parallel: input columns sharded, bias whole
  add(bias * h);
  norm();
  add(fc1_width(m) / tp * h);
  add(bias * fc1_width(m) / tp);
  add(h * (m.ffn_hidden_size / tp));
  add(bias * h);
}

}  // namespace

std::vector<ParameterTensor> rank_parameters(const TransformerConfig& m, int tp, const PipelineLayout& layout,
                                             int stage) {
  TS_CHECK(stage >= 0 && stage < layout.pp(), "rank_parameters: stage ", stage, " of ", layout.pp());
  std::vector<ParameterTensor> out;
  const int64_t h = m.hidden_size, table = m.padded_vocab_size(tp) / tp * h;
  const size_t head_unit = size_t(m.num_layers) + 1;
  for (int chunk = 0; chunk < layout.vpp(); ++chunk) {
    const StageChunk here{stage, chunk};
    const bool first = here == layout.embedding(), last = here == layout.head();
    // The last piece holds its own copy of a tied table (GptModel registers it as the embedding).
    if (first || (last && m.tie_word_embeddings)) out.push_back({table, 0});
    if (first && m.position_embedding == PositionEmbedding::Learned) out.push_back({m.max_position_embeddings * h, 0});
    for (int64_t layer : layout.layers(stage, chunk)) append_layer(m, tp, size_t(layer) + 1, out);
    if (!last) continue;
    out.push_back({h, head_unit});
    if (m.normalization == Normalization::LayerNorm) out.push_back({h, head_unit});
    if (!m.tie_word_embeddings) out.push_back({table, head_unit});
  }
  return out;
}

StateBytes training_state_bytes(const std::vector<ParameterTensor>& parameters, int zero_stage, int dp,
                                double bucket_size_mb, int fsdp_prefetch) {
  TS_CHECK(zero_stage >= 0 && zero_stage <= 3, "training_state_bytes: zero stage ", zero_stage);
  TS_CHECK(dp >= 1, "training_state_bytes: dp ", dp);
  StateBytes bytes;
  int64_t numel = 0;
  for (const ParameterTensor& p : parameters) numel += p.numel;
  if (zero_stage == 3) {
    // FSDP: each unit's flat buffer padded to a multiple of dp, a 1/dp shard of it kept per rank.
    std::vector<int64_t> units;
    for (const ParameterTensor& p : parameters) {
      if (units.size() <= p.unit) units.resize(p.unit + 1, 0);
      units[p.unit] += p.numel;
    }
    int64_t shards = 0, largest = 0;
    for (int64_t unit : units) {
      if (unit == 0) continue;
      shards += round_up(unit, dp) / dp;
      largest = std::max(largest, round_up(unit, dp));
    }
    bytes.parameters = shards * kParamBytes;
    bytes.gradients = shards * kGradBytes;
    bytes.optimizer_state = shards * kAdamBytes;
    // FullyShardedDataParallel's bounds: (2 + prefetch) gathered units, 4 reductions of unit + shard.
    bytes.communication = (2 + fsdp_prefetch) * largest * kParamBytes + 4 * (largest + largest / dp) * kGradBytes;
    return bytes;
  }
  bytes.parameters = numel * kParamBytes;
  if (zero_stage == 0) {
    // DDP's buffer (buckets padded to dp) and AdamW's whole per-parameter state.
    int64_t padded = 0, open = 0;
    const int64_t target = std::max<int64_t>(1, int64_t(bucket_size_mb * double(1 << 20) / 4.0));
    for (size_t i = parameters.size(); i-- > 0;) {
      open += parameters[i].numel;
      if (open >= target) padded += round_up(open, dp), open = 0;
    }
    if (open > 0) padded += round_up(open, dp);
    bytes.gradients = (dp > 1 ? padded : numel) * kGradBytes;
    bytes.optimizer_state = numel * kAdamBytes;
    return bytes;
  }
  // ZeRO-1/2: the same buckets; state on 1/dp of the padded buffer; the largest bucket's
  // transient reduce-scatter output + parameter staging + all-gather (+ ZeRO-2's gradient staging).
  int64_t padded = 0, open = 0, largest = 0;
  const int64_t target = std::max<int64_t>(1, int64_t(bucket_size_mb * double(1 << 20) / 4.0));
  auto close = [&] {
    const int64_t bucket = round_up(open, dp);
    padded += bucket;
    largest = std::max(largest, bucket);
    open = 0;
  };
  for (size_t i = parameters.size(); i-- > 0;) {
    open += parameters[i].numel;
    if (open >= target) close();
  }
  if (open > 0) close();
  bytes.gradients = (zero_stage == 1 ? padded : padded / dp) * kGradBytes;
  bytes.optimizer_state = padded / dp * kAdamBytes;
  bytes.communication = largest / dp * (kGradBytes + kParamBytes) + largest * kParamBytes;
  if (zero_stage == 2) bytes.communication += largest * kGradBytes;
  return bytes;
}

double layer_activation_bytes(const TransformerConfig& m, int64_t tokens, int tp, bool sequence_parallel,
                              Recompute recompute) {
  const double h = double(m.hidden_size), t = double(tp), n = double(tokens);
  const double replicated = sequence_parallel ? t : 1.0;
  const double input = kActBytes * h / replicated;
  if (recompute == Recompute::Full) return n * input;
  const double residual = kActBytes * h / replicated;
  const double norm_outputs = 2 * kActBytes * h;
  // fc2's input is kept for SwiGLU (swiglu(gate, up)); for GELU, fc2 keeps fc1's output alone and
  // recomputes the GELU in its backward (core/ops linear_of_gelu).
  const double fc2_input = m.activation == Activation::SwiGLU ? double(m.ffn_hidden_size) : 0.0;
  const double sharded =
      kActBytes * (double(qkv_width(m)) + double(m.num_attention_heads * m.head_dim()) + double(fc1_width(m)) + fc2_input) /
      t;
  const double norm_stats = (m.normalization == Normalization::LayerNorm ? 2 : 1) * 2 * kStatBytes;
  const double lse = kStatBytes * double(m.num_attention_heads) / t;
  return n * (input + residual + norm_outputs + sharded + norm_stats + lse);
}

double korthikanti_layer_activation_bytes(double s, double b, double h, double a, double t, bool sequence_parallel,
                                          Recompute recompute) {
  const double sbh = s * b * h;
  if (recompute == Recompute::Full) return 2 * sbh;
  const double attention = recompute == Recompute::Selective ? 0.0 : 5 * a * s / h;
  if (sequence_parallel) return sbh / t * (34 + attention);
  return sbh * (10 + 24 / t + attention / t);
}

namespace {

// The most (micro-batch, chunk) activations each stage holds at once under the trainer's schedule.
std::vector<int> live_activations(const Candidate& c, int64_t num_microbatches) {
  if (c.pp == 1) return {1};
  PipelineScheduleOptions options{c.vpp > 1 ? PipelineScheduleKind::Interleaved1F1B : PipelineScheduleKind::OneFOneB,
                                  c.pp, c.vpp, int(num_microbatches)};
  PipelineSchedule schedule = build_pipeline_schedule(options);
  std::vector<int> live;
  for (const auto& actions : schedule.stages) live.push_back(peak_live_activations(actions));
  return live;
}

// LoRA adapter parameters on one layer of a tp rank: A [r, in] and B [out, r] beside qkv, proj,
// fc1, fc2; the sharded side of each follows its base layer (column: B's rows, row: A's columns).
int64_t lora_layer_parameters(const TransformerConfig& m, int64_t r, int tp) {
  const int64_t h = m.hidden_size;
  return r * (h + qkv_width(m) / tp) + r * (m.num_attention_heads * m.head_dim() / tp + h) +
         r * (h + fc1_width(m) / tp) + r * (m.ffn_hidden_size / tp + h);
}

}  // namespace

MemoryEstimate estimate_memory(const Job& job, const Candidate& c, const GpuSpec& gpu) {
  const TransformerConfig& m = job.model;
  const PipelineLayout layout = even_pipeline_layout(m.num_layers, c.pp, c.vpp);
  const int64_t num_microbatches = c.num_microbatches(job);
  const std::vector<int> live = live_activations(c, num_microbatches);
  // DPO runs the chosen and the rejected sequence of every pair.
  const int64_t tokens = c.micro_batch_size * job.seq_length * (job.workload == Workload::Dpo ? 2 : 1);
  const double replicated = c.sequence_parallel ? double(c.tp) : 1.0;

  MemoryEstimate best;
  for (int stage = 0; stage < c.pp; ++stage) {
    const std::vector<ParameterTensor> parameters = rank_parameters(m, c.tp, layout, stage);
    int64_t numel = 0;
    size_t layers = 0, chunk_layers = 0;
    for (const ParameterTensor& p : parameters) numel += p.numel;
    for (int chunk = 0; chunk < c.vpp; ++chunk) {
      layers += layout.layers(stage, chunk).size();
      chunk_layers = std::max(chunk_layers, layout.layers(stage, chunk).size());
    }
    MemoryEstimate e;
    e.stage = stage;
    if (job.workload == Workload::Lora) {
      // Frozen bf16 base (sharded over dp only by ZeRO-3); adapters trained with the full state.
      const double base = double(numel) * kParamBytes / (c.zero_stage == 3 ? c.dp : 1);
      const double adapters = double(lora_layer_parameters(m, job.lora_rank, c.tp)) * double(layers);
      const double shards = c.zero_stage >= 1 ? double(c.dp) : 1.0;  // ZeRO-1 on: optimizer state; ZeRO-2 on: gradients
      e.parameters = base + adapters * kParamBytes;
      e.gradients = adapters * kGradBytes / (c.zero_stage >= 2 ? shards : 1.0);
      e.optimizer_state = adapters * kAdamBytes / shards;
    } else {
      const StateBytes state =
          training_state_bytes(parameters, c.zero_stage, c.dp, job.ddp_bucket_size_mb, job.fsdp_prefetch);
      // PPO trains a critic of the actor's size beside it.
      const double models = job.workload == Workload::Ppo ? 2.0 : 1.0;
      e.parameters = models * double(state.parameters);
      e.gradients = models * double(state.gradients);
      e.optimizer_state = models * double(state.optimizer_state);
      e.communication = double(state.communication);
    }
    // Frozen copies: DPO's reference; PPO's reference and reward model, and the rollout KV cache.
    const double frozen_copy = double(numel) * kParamBytes / (c.zero_stage == 3 ? c.dp : 1);
    if (job.workload == Workload::Dpo) e.frozen = frozen_copy;
    if (job.workload == Workload::Ppo) {
      const double kv = 2.0 * kActBytes * double(m.num_query_groups * m.head_dim() / c.tp);
      e.frozen = 2 * frozen_copy + double(tokens) * double(layers) * kv;
    }
    // Activations: the live chunks' layers, one layer's full set while it is recomputed, and on
    // the last stage the final norm, the logits and their gradient (one micro-batch at a time).
    const int held = live[size_t(std::min<int>(stage, int(live.size()) - 1))];
    e.activations =
        double(held) * double(chunk_layers) * layer_activation_bytes(m, tokens, c.tp, c.sequence_parallel, c.recompute);
    if (c.recompute == Recompute::Full)
      e.activations += layer_activation_bytes(m, tokens, c.tp, c.sequence_parallel, Recompute::None);
    if (stage == c.pp - 1) {
      const double vocab = double(m.padded_vocab_size(c.tp) / c.tp);
      e.activations +=
          double(tokens) * (kActBytes * double(m.hidden_size) * (1 + 1 / replicated) + 2 * kActBytes * vocab);
    }
    // Pipeline receive buffers: an activation and a gradient per direction.
    if (c.pp > 1) e.communication += 4 * double(tokens) * kActBytes * double(m.hidden_size) / replicated;
    e.fragmentation = gpu.fragmentation * e.live();
    if (stage == 0 || e.peak() > best.peak()) best = e;
  }
  return best;
}

}  // namespace tessera::autoconfig
