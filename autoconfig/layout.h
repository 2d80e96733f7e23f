// What the auto-configurator searches over (a Candidate: one parallel layout with its micro
// batch, ZeRO stage and recomputation) and what it is asked to place (a Job: the model, the
// workload, the cluster and the batch). Names follow Megatron's options, as the recipes do.
#pragma once

#include <cstdint>
#include <string>

#include "models/transformer_config.h"
#include "parallel/pipeline_layout.h"

namespace tessera::autoconfig {

// Megatron's recompute granularities. The trainer runs None and Full (model.recompute_granularity);
// Selective is modelled (Korthikanti et al.) but never proposed: Tessera's fused attention already
// keeps no [s, s] scores, which is what selective recomputation would drop.
enum class Recompute { None, Selective, Full };
std::string recompute_name(Recompute recompute);  // "none", "selective", "full"

// Pretraining and the post-training recipes, whose memory differs: LoRA trains adapters over a
// frozen base, DPO adds a frozen reference model and runs chosen + rejected sequences, PPO holds
// an actor and a critic (trained) and a reference and a reward model (frozen) and rollout KV caches.
enum class Workload { Pretrain, Sft, Lora, Dpo, Ppo };
std::string workload_name(Workload workload);          // "pretrain", "sft", "lora", "dpo", "ppo"
Workload workload_from_name(const std::string& name);  // throws naming the choices

struct Job {
  TransformerConfig model;
  Workload workload = Workload::Pretrain;
  int64_t lora_rank = 16;  // LoRA adapters on qkv, proj, fc1, fc2 of every layer
  int64_t seq_length = 1024;
  int64_t global_batch_size = 1;  // samples (DPO: preference pairs, PPO: prompts) per optimizer step
  int gpus = 1;
  int gpus_per_node = 8;
  double ddp_bucket_size_mb = 40.0;  // parallel.ddp_bucket_size_mb (the bucket layout pads per bucket)
  int fsdp_prefetch = 1;             // parallel.fsdp_prefetch
};

struct Candidate {
  int tp = 1, pp = 1, vpp = 1, cp = 1, dp = 1;
  bool sequence_parallel = false;
  int zero_stage = 0;
  int64_t micro_batch_size = 1;
  Recompute recompute = Recompute::None;
  int64_t num_microbatches(const Job& job) const { return job.global_batch_size / (micro_batch_size * dp); }
  // "tp 2 pp 4 vpp 2 dp 8 sp zero 1 mbs 2 recompute full"
  std::string describe() const;
};

// The even split of `layers` over pp stages x vpp chunks (the trainer's default split); throws
// when it does not divide.
PipelineLayout even_pipeline_layout(int64_t layers, int pp, int vpp);

}  // namespace tessera::autoconfig
