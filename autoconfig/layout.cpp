#include "autoconfig/layout.h"

#include <fmt/format.h>

#include "core/check.h"

namespace tessera::autoconfig {

std::string recompute_name(Recompute recompute) {
  switch (recompute) {
    case Recompute::None:
      return "none";
    case Recompute::Selective:
      return "selective";
    case Recompute::Full:
      return "full";
  }
  return "?";
}

std::string workload_name(Workload workload) {
  switch (workload) {
    case Workload::Pretrain:
      return "pretrain";
    case Workload::Sft:
      return "sft";
    case Workload::Lora:
      return "lora";
    case Workload::Dpo:
      return "dpo";
    case Workload::Ppo:
      return "ppo";
  }
  return "?";
}

Workload workload_from_name(const std::string& name) {
  for (Workload w : {Workload::Pretrain, Workload::Sft, Workload::Lora, Workload::Dpo, Workload::Ppo})
    if (workload_name(w) == name) return w;
  TS_CHECK(false, "unknown --workload '", name, "'; choose pretrain, sft, lora, dpo or ppo");
  return Workload::Pretrain;
}

std::string Candidate::describe() const {
  return fmt::format("tp {} pp {}{} dp {}{} zero {} mbs {} recompute {}", tp, pp,
                     vpp > 1 ? fmt::format(" vpp {}", vpp) : std::string(), dp, sequence_parallel ? " sp" : "",
                     zero_stage, micro_batch_size, recompute_name(recompute));
}

PipelineLayout even_pipeline_layout(int64_t layers, int pp, int vpp) {
  PipelineLayoutOptions options;
  options.num_layers = layers;
  options.pp = pp;
  if (vpp > 1) options.vpp = vpp;
  return PipelineLayout(options);
}

}  // namespace tessera::autoconfig
