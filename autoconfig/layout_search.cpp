#include "autoconfig/layout_search.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>

#include "core/check.h"
#include "parallel/pipeline_layout.h"
#include "parallel/pipeline_schedule.h"

namespace tessera::autoconfig {

namespace {

constexpr int64_t kMaxMicroBatch = 64;
constexpr double kGiB = double(int64_t{1} << 30);

std::vector<int> divisors(int64_t n) {
  std::vector<int> out;
  for (int64_t d = 1; d <= n; ++d)
    if (n % d == 0) out.push_back(int(d));
  return out;
}

bool pipeline_splits(const Job& job, int pp, int vpp) {
  if (job.model.num_layers % (int64_t(pp) * vpp) != 0) return false;
  try {
    even_pipeline_layout(job.model.num_layers, pp, vpp);
  } catch (const Error&) {
    return false;
  }
  return true;
}

// The layouts of `gpus` GPUs the trainer runs (header comment of layout_search.h).
std::vector<Candidate> layouts_for(const Job& job, int gpus) {
  const TransformerConfig& m = job.model;
  std::vector<Candidate> out;
  for (int tp : divisors(gpus)) {
    if (tp > job.gpus_per_node || m.num_attention_heads % tp != 0 || m.num_query_groups % tp != 0) continue;
    for (int pp : divisors(gpus / tp)) {
      const int dp = gpus / (tp * pp);
      if (job.global_batch_size % dp != 0) continue;
      for (int vpp = 1; vpp <= std::max<int64_t>(1, m.num_layers / pp); ++vpp) {
        if ((vpp > 1 && pp == 1) || !pipeline_splits(job, pp, vpp)) continue;
        for (int64_t mbs : divisors(job.global_batch_size / dp)) {
          if (mbs > kMaxMicroBatch) break;
          const int64_t microbatches = job.global_batch_size / (mbs * dp);
          if (pp > 1) {
            try {
              validate_schedule_options(
                  {vpp > 1 ? PipelineScheduleKind::Interleaved1F1B : PipelineScheduleKind::OneFOneB, pp, vpp,
                   int(microbatches)});
            } catch (const Error&) {
              continue;
            }
          }
          for (int zero = 0; zero <= 3; ++zero) {
            if (zero > 0 && dp == 1) break;  // nothing to shard over
            if (pp > 1 && zero >= 2) break;  // the trainer refuses ZeRO-2/3 with pipelines
            for (Recompute recompute : {Recompute::None, Recompute::Full}) {
              Candidate c;
              c.tp = tp, c.pp = pp, c.vpp = vpp, c.dp = dp;
              // ZeRO-2 and 3 drop gradients before sp's tp sum of the norm gradients, so the trainer
              // refuses sp with them; elsewhere it only saves memory.
              c.sequence_parallel = tp > 1 && zero < 2 && job.seq_length % tp == 0;
              c.zero_stage = zero;
              c.micro_batch_size = mbs;
              c.recompute = recompute;
              out.push_back(c);
            }
          }
        }
      }
    }
  }
  return out;
}

// GPU counts within a factor of two of `gpus` that have layouts, nearest first (at most two).
std::string nearby_gpu_counts(const Job& job) {
  std::vector<int> found;
  for (int distance = 1; distance <= job.gpus && found.size() < 2; ++distance) {
    for (int g : {job.gpus - distance, job.gpus + distance}) {
      if (g >= 1 && found.size() < 2 && !layouts_for(job, g).empty()) found.push_back(g);
    }
  }
  if (found.empty()) return "none within a factor of two";
  std::sort(found.begin(), found.end());
  std::string text;
  for (int g : found) text += (text.empty() ? "" : " or ") + std::to_string(g);
  return text;
}

// The part of the step each component takes (for the why column).
std::array<std::pair<const char*, double>, 6> components(const Evaluated& e) {
  const TimeEstimate& t = e.time;
  const double bubble = t.pipeline * t.bubble_fraction;  // 0 without pipelines
  return {{{"compute", t.pipeline - bubble - t.recompute - t.tp_communication},
           {"recomputation", t.recompute},
           {"tensor-parallel communication", t.tp_communication},
           {"pipeline bubble", bubble},
           {"exposed data-parallel communication", t.dp_exposed},
           {"optimizer", t.optimizer}}};
}

// Fills `why` of each row: the first is the fastest; every other one names the part of the step
// that grew most against the first; the leanest row says so.
void explain(std::vector<Evaluated>& rows) {
  if (rows.empty()) return;
  double least_memory = rows.front().memory.peak();
  for (const Evaluated& e : rows) least_memory = std::min(least_memory, e.memory.peak());
  const auto best = components(rows.front());
  for (size_t i = 0; i < rows.size(); ++i) {
    Evaluated& e = rows[i];
    if (i == 0) {
      e.why = "fastest predicted step";
    } else {
      const auto mine = components(e);
      size_t worst = 0;
      for (size_t k = 1; k < mine.size(); ++k)
        if (mine[k].second - best[k].second > mine[worst].second - best[worst].second) worst = k;
      const double grew = mine[worst].second - best[worst].second;
      e.why = grew <= 0
                  ? std::string("as fast as #1")
                  : fmt::format("+{:.1f}% vs #1: more {} (+{:.0f} ms)",
                                100.0 * (e.time.step / rows.front().time.step - 1), mine[worst].first, 1e3 * grew);
    }
    if (e.memory.peak() == least_memory) e.why += "; least memory";
  }
}

}  // namespace

std::vector<Candidate> enumerate_layouts(const Job& job) {
  TS_CHECK(job.gpus >= 1, "--gpus must be at least 1, got ", job.gpus);
  TS_CHECK(job.gpus_per_node >= 1, "--gpus-per-node must be at least 1, got ", job.gpus_per_node);
  TS_CHECK(job.seq_length <= job.model.max_position_embeddings, "--seq-len ", job.seq_length, " exceeds ",
           job.model.name, "'s max_position_embeddings ", job.model.max_position_embeddings,
           "; use a shorter sequence or a model that supports it");
  std::vector<Candidate> out = layouts_for(job, job.gpus);
  TS_CHECK(!out.empty(), "--gpus ", job.gpus, " has no layout ", job.model.name, " can run: tp must divide its ",
           job.model.num_attention_heads, " heads and ", job.model.num_query_groups,
           " key/value heads (within a node of ", job.gpus_per_node, "), pp must divide its ", job.model.num_layers,
           " layers, and dp = gpus / (tp x pp) must divide --global-batch ", job.global_batch_size, "; use --gpus ",
           nearby_gpu_counts(job), ", or change --global-batch");
  return out;
}

SearchResult search_layouts(const Job& job, const GpuSpec& gpu) {
  const std::vector<Candidate> candidates = enumerate_layouts(job);
  SearchResult result;
  result.enumerated = candidates.size();
  const Evaluated* leanest = nullptr;
  std::vector<Evaluated> all;
  all.reserve(candidates.size());
  for (const Candidate& c : candidates) all.push_back({c, estimate_memory(job, c, gpu), {}, {}});
  for (const Evaluated& e : all) {
    if (!leanest || e.memory.peak() < leanest->memory.peak()) leanest = &e;
    if (e.memory.peak() <= gpu.usable_bytes()) result.ranked.push_back(e);
  }
  if (result.ranked.empty()) {
    // How many GPUs would do: the first doubling whose leanest layout fits.
    std::string more = "more GPUs (--gpus)";
    for (int factor = 2; factor <= 64; factor *= 2) {
      Job bigger = job;
      bigger.gpus = job.gpus * factor;
      bool fits = false;
      for (const Candidate& c : layouts_for(bigger, bigger.gpus)) {
        if (estimate_memory(bigger, c, gpu).peak() <= gpu.usable_bytes()) {
          fits = true;
          break;
        }
      }
      if (fits) {
        more = fmt::format("--gpus {} or more", bigger.gpus);
        break;
      }
    }
    TS_CHECK(false, job.model.name, " (", workload_name(job.workload), ", seq ", job.seq_length, ") fits no layout of ",
             job.gpus, " x ", gpu.name, " (", fmt::format("{:.1f}", gpu.usable_bytes() / kGiB),
             " GiB usable each): the leanest, ", leanest->candidate.describe(), ", needs ",
             fmt::format("{:.1f}", leanest->memory.peak() / kGiB), " GiB per GPU; use ", more,
             ", a GPU with more memory (--gpu), or a shorter --seq-len");
  }
  for (Evaluated& e : result.ranked) e.time = estimate_step_time(job, e.candidate, gpu);
  std::stable_sort(result.ranked.begin(), result.ranked.end(), [](const Evaluated& a, const Evaluated& b) {
    if (a.time.step != b.time.step) return a.time.step < b.time.step;
    return a.memory.peak() < b.memory.peak();
  });
  return result;
}

std::string format_table(const SearchResult& result, const Job& job, const GpuSpec& gpu, size_t top_k) {
  std::vector<Evaluated> shown(result.ranked.begin(),
                               result.ranked.begin() + std::ptrdiff_t(std::min(top_k, result.ranked.size())));
  explain(shown);
  std::string out = fmt::format(
      "{} {} on {} x {} ({} per node), seq {}, global batch {}: {} runnable layouts, {} fit in {:.1f} GiB\n",
      workload_name(job.workload), job.model.name, job.gpus, gpu.name, job.gpus_per_node, job.seq_length,
      job.global_batch_size, result.enumerated, result.ranked.size(), gpu.usable_bytes() / kGiB);
  out += fmt::format(
      "{:>2} {:>3} {:>3} {:>3} {:>4} {:>2} {:>4} {:>4} {:>9} {:>8} {:>8} {:>8} {:>9} {:>10} {:>6} {:>6}  {}\n", "#",
      "tp", "pp", "vpp", "dp", "sp", "zero", "mbs", "recompute", "mem GiB", "state", "activ", "step s", "tokens/s",
      "MFU", "bubble", "why");
  for (size_t i = 0; i < shown.size(); ++i) {
    const Evaluated& e = shown[i];
    const Candidate& c = e.candidate;
    const MemoryEstimate& m = e.memory;
    out += fmt::format(
        "{:>2} {:>3} {:>3} {:>3} {:>4} {:>2} {:>4} {:>4} {:>9} {:>8.1f} {:>8.1f} {:>8.1f} {:>9.3f} {:>10.0f} {:>5.1f}% "
        "{:>5.1f}%  {}\n",
        i + 1, c.tp, c.pp, c.vpp, c.dp, c.sequence_parallel ? "y" : "n", c.zero_stage, c.micro_batch_size,
        recompute_name(c.recompute), m.peak() / kGiB, (m.parameters + m.gradients + m.optimizer_state) / kGiB,
        m.activations / kGiB, e.time.step, e.time.tokens_per_second, 100 * e.time.mfu, 100 * e.time.bubble_fraction,
        e.why);
  }
  return out;
}

std::vector<std::string> recipe_overrides(const Candidate& c, const Job& job) {
  std::vector<std::string> overrides = {fmt::format("parallel.tensor_model_parallel_size={}", c.tp),
          fmt::format("parallel.pipeline_model_parallel_size={}", c.pp),
          fmt::format("parallel.virtual_pipeline_model_parallel_size={}", c.vpp),
          fmt::format("parallel.sequence_parallel={}", c.sequence_parallel ? "true" : "false"),
          fmt::format("parallel.zero_stage={}", c.zero_stage),
          "parallel.fsdp=false",              // zero_stage says it
          "parallel.pipeline_schedule=auto",  // 1f1b, or interleaved_1f1b with vpp > 1
          fmt::format("parallel.ddp_bucket_size_mb={}", job.ddp_bucket_size_mb),
          fmt::format("parallel.fsdp_prefetch={}", job.fsdp_prefetch),
          fmt::format("model.recompute_granularity={}", recompute_name(c.recompute)),
          fmt::format("data.seq_length={}", job.seq_length),
          fmt::format("train.micro_batch_size={}", c.micro_batch_size),
          fmt::format("train.global_batch_size={}", job.global_batch_size),
          "train.precision=bf16"};
  // train.cuda_graph replays one process's step; a recipe that sets it for one GPU keeps it there.
  if (job.gpus > 1) overrides.push_back("train.cuda_graph=false");
  return overrides;
}

}  // namespace tessera::autoconfig
