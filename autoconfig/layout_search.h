// The search behind `tessera autoconfig`: every layout the trainer can run for a job
// (enumerate_layouts), its predicted memory and step time, the ones that fit ranked fastest
// first, a table of the top K with why each placed where it did, and the recipe keys that
// select a layout.
//
// Axes and the trainer's rules (launcher/train_config.cpp refuses the rest, so they are never
// proposed): tp divides the world, the attention heads and the key/value heads, and stays
// inside a node; pp divides what is left and the layers split evenly over pp x vpp virtual
// stages; vpp > 1 (interleaved 1F1B) needs a multiple of pp micro-batches; dp = gpus / (tp x pp)
// divides the global batch; every micro batch dividing global / dp; sequence parallelism on
// whenever tp > 1 (it only saves memory) except with ZeRO-2 and 3, which refuse it; ZeRO 0-3 when
// dp > 1 (pipelines: 0 or 1; ZeRO-3 only without pipelines); recomputation none or full. Not
// searched because the trainer lacks them: context parallelism (cp = 1) and selective
// recomputation.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "autoconfig/hardware.h"
#include "autoconfig/layout.h"
#include "autoconfig/memory_model.h"
#include "autoconfig/time_model.h"

namespace tessera::autoconfig {

struct Evaluated {
  Candidate candidate;
  MemoryEstimate memory;
  TimeEstimate time;
  std::string why;  // what put it at its rank
};

struct SearchResult {
  std::vector<Evaluated> ranked;  // the layouts that fit, fastest first
  size_t enumerated = 0;          // layouts the trainer can run
};

// Every layout the trainer can run for `job`, or a one-line error saying why none is valid and
// which GPU counts near job.gpus have one.
std::vector<Candidate> enumerate_layouts(const Job& job);

// Estimates every layout, drops what does not fit gpu.usable_bytes(), ranks the rest. Throws a
// one-line error naming the leanest layout's need and what to change when nothing fits.
SearchResult search_layouts(const Job& job, const GpuSpec& gpu);

// The top `top_k` as a table (memory in GiB, step time, tokens/s, MFU, bubble, why).
std::string format_table(const SearchResult& result, const Job& job, const GpuSpec& gpu, size_t top_k);

// `section.key=value` recipe overrides that select the candidate (Recipe::load's syntax).
std::vector<std::string> recipe_overrides(const Candidate& candidate, const Job& job);

}  // namespace tessera::autoconfig
