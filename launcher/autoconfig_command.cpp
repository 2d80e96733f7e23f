#include "launcher/autoconfig_command.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "launcher/recipe.h"
#include "launcher/train_config.h"

namespace tessera {

namespace {

using autoconfig::Evaluated;
using autoconfig::Job;
using autoconfig::Workload;

bool is_recipe_path(const std::string& model) {
  const std::filesystem::path path(model);
  return path.extension() == ".yaml" || path.extension() == ".yml" || std::filesystem::is_regular_file(path);
}

// A recipe for a preset: what `tessera train` requires besides the layout, with the data to be filled in.
std::string preset_recipe_text(const TransformerConfig& model) {
  const bool llama = model.position_embedding == PositionEmbedding::Rope;
  return fmt::format(R"(model:
  preset: {}
data:
  data_path: [data/SET_ME_text_document]
  tokenizer_type: {}
{}train:
  train_iters: 1000
  device: cuda
logging:
  run_dir: runs/autoconfig
)",
                     model.name, llama ? "HuggingFaceTokenizer" : "GPT2BPETokenizer",
                     llama ? "  tokenizer_model: tokenizers/llama3/tokenizer.json\n" : "");
}

// Recipe keys the search cannot honour: it proposes even pipeline splits and models f32 gradients.
void check_searchable(const Recipe& r) {
  for (const char* key : {"parallel.decoder_first_pipeline_num_layers", "parallel.decoder_last_pipeline_num_layers"}) {
    TS_CHECK(!r.has(key), r.origin(key), ": ", key,
             " is set, but autoconfig proposes even pipeline splits; remove it from the recipe");
  }
  TS_CHECK(r.get_string("parallel.pipeline_model_parallel_layout").empty(),
           r.origin("parallel.pipeline_model_parallel_layout"),
           ": parallel.pipeline_model_parallel_layout is set, but autoconfig proposes even pipeline splits; remove it "
           "from the recipe");
  TS_CHECK(!r.get_bool("parallel.grad_reduce_in_bf16"), r.origin("parallel.grad_reduce_in_bf16"),
           ": parallel.grad_reduce_in_bf16 = true, but autoconfig's memory model has f32 gradients; set it false for "
           "the search");
}

std::string header(const AutoconfigCommandOptions& o, const Job& job, const Evaluated& best, bool from_preset,
                   double measured_tokens_per_second) {
  const double gib = double(int64_t{1} << 30);
  std::string text = fmt::format(
      "# Written by `tessera autoconfig --model {} --gpus {} --gpus-per-node {} --gpu {}`.\n"
      "# Layout: {}; predicted per GPU: peak memory {:.1f} GiB, step {:.3f} s, {:.0f} tokens/s, MFU {:.1f}%.\n"
      "# Run it on {} ranks (data parallel = {} / (tp x pp)), e.g. srun --mpi=pmix -n {} tessera train THIS_FILE\n",
      o.model, job.gpus, job.gpus_per_node, o.gpu, best.candidate.describe(), best.memory.peak() / gib, best.time.step,
      best.time.tokens_per_second, 100 * best.time.mfu, job.gpus, job.gpus, job.gpus);
  if (measured_tokens_per_second > 0)
    text += fmt::format("# Measured here (--measure, fastest of the top {}): {:.0f} tokens/s.\n", o.top,
                        measured_tokens_per_second);
  if (from_preset) text += "# Set data.data_path (and the tokenizer files) to your corpus before training.\n";
  return text;
}

// From a run's metrics: the median tokens/s of the logged steps after the first (warm-up:
// allocation, plan caches) and the largest per-step peak memory of any step.
void read_measurement(const std::filesystem::path& metrics, MeasuredLayout& m) {
  std::ifstream in(metrics);
  std::vector<double> rates;
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json entry = nlohmann::json::parse(line, nullptr, false);
    if (!entry.is_object()) continue;
    if (entry.contains("tokens_per_second") && entry.value("step", 0) > 1)
      rates.push_back(entry["tokens_per_second"].get<double>());
    m.peak_memory_bytes = std::max(m.peak_memory_bytes, entry.value("peak_memory_bytes", 0.0));
  }
  if (rates.empty()) return;
  std::sort(rates.begin(), rates.end());
  m.tokens_per_second = rates[rates.size() / 2];
}

std::string last_line(const std::filesystem::path& log) {
  std::ifstream in(log);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  return last.empty() ? "no output" : last;
}

// Trains each of `top` for a few steps in a child `tessera train` and ranks them by measured speed.
std::vector<MeasuredLayout> measure_layouts(const AutoconfigCommandOptions& o, const Job& job,
                                            const std::string& base_text, const std::string& base_origin,
                                            const std::vector<Evaluated>& top) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / fmt::format("tessera_autoconfig_measure_{}", ::getpid());
  std::filesystem::create_directories(dir);
  const std::string exe =
      o.tessera_executable.empty() ? std::filesystem::read_symlink("/proc/self/exe").string() : o.tessera_executable;
  std::string launcher = job.gpus > 1 ? o.launcher : "";
  if (const size_t at = launcher.find("{gpus}"); at != std::string::npos)
    launcher.replace(at, 6, std::to_string(job.gpus));
  std::vector<MeasuredLayout> measured;
  for (size_t i = 0; i < top.size(); ++i) {
    const std::filesystem::path run_dir = dir / fmt::format("layout_{}", i + 1);
    std::vector<std::string> overrides = autoconfig::recipe_overrides(top[i].candidate, job);
    // A short run: no evaluation, no checkpoints, no warmup or decay to fit into the few steps.
    for (const std::string& extra :
         {fmt::format("train.train_iters={}", o.measure_steps), std::string("train.eval_iters=0"),
          std::string("train.resume=none"), std::string("checkpoint.save="), std::string("logging.log_interval=1"),
          std::string("scheduler.lr_decay_style=constant"), std::string("scheduler.lr_warmup_iters=0"),
          fmt::format("scheduler.lr_decay_iters={}", o.measure_steps), "logging.run_dir=" + run_dir.string()})
      overrides.push_back(extra);
    const std::filesystem::path recipe = dir / fmt::format("layout_{}.yaml", i + 1);
    std::ofstream(recipe) << Recipe::parse(base_text, base_origin, overrides).resolved_yaml();
    const std::filesystem::path log = dir / fmt::format("layout_{}.log", i + 1);
    const std::string command = fmt::format("{}{}'{}' train '{}' > '{}' 2>&1", launcher, launcher.empty() ? "" : " ",
                                            exe, recipe.string(), log.string());
    fmt::print("measuring #{} ({}) for {} steps ...\n", i + 1, top[i].candidate.describe(), o.measure_steps);
    std::fflush(stdout);
    MeasuredLayout m{top[i], 0.0, 0.0, ""};
    if (std::system(command.c_str()) == 0) read_measurement(run_dir / "metrics.jsonl", m);
    if (m.tokens_per_second == 0) m.failure = last_line(log);
    measured.push_back(std::move(m));
  }
  std::filesystem::remove_all(dir);
  std::stable_sort(measured.begin(), measured.end(), [](const MeasuredLayout& a, const MeasuredLayout& b) {
    return a.tokens_per_second > b.tokens_per_second;
  });
  return measured;
}

std::string measured_table(const std::vector<MeasuredLayout>& measured) {
  constexpr double gib = double(1 << 30);
  std::string out = fmt::format(
      "measured (ranked by measured tokens/s; peak memory per GPU):\n{:>2}  {:<55} {:>12} {:>12} {:>9} {:>10} {:>10}\n",
      "#", "layout", "predicted", "measured", "ratio", "pred GiB", "meas GiB");
  for (size_t i = 0; i < measured.size(); ++i) {
    const MeasuredLayout& m = measured[i];
    const double predicted = m.predicted.time.tokens_per_second;
    out += m.tokens_per_second > 0
               ? fmt::format("{:>2}  {:<55} {:>12.0f} {:>12.0f} {:>9.2f} {:>10.2f} {:>10.2f}\n", i + 1,
                             m.predicted.candidate.describe(), predicted, m.tokens_per_second,
                             m.tokens_per_second / predicted, m.predicted.memory.peak() / gib,
                             m.peak_memory_bytes / gib)
               : fmt::format("{:>2}  {:<55} {:>12.0f} {:>12} failed: {}\n", i + 1, m.predicted.candidate.describe(),
                             predicted, "-", m.failure);
  }
  return out;
}

}  // namespace

CLI::App* add_autoconfig_subcommand(CLI::App& app, AutoconfigCommandOptions& o) {
  CLI::App* command = app.add_subcommand(
      "autoconfig", "Search the parallel layouts for a model and GPU count; print the top K and write the best recipe");
  command->add_option("--model", o.model, "a preset (gpt2-124m, llama3-8b, ...) or a recipe YAML")->required();
  command->add_option("--gpus", o.gpus, "GPUs in the job (the world size)")->required()->check(CLI::PositiveNumber);
  command->add_option("--gpus-per-node", o.gpus_per_node, "GPUs per node (NVLink domain)")->check(CLI::PositiveNumber);
  command->add_option("--gpu", o.gpu, "GPU type: a table in autoconfig/hardware (h100-80gb, h200-141gb, a100-80gb)");
  command->add_option("--seq-len", o.seq_len, "tokens per sample (default: the recipe's, or 2048)")
      ->check(CLI::PositiveNumber);
  command->add_option("--global-batch", o.global_batch, "samples per optimizer step (default: the recipe's)")
      ->check(CLI::PositiveNumber);
  command->add_option("--workload", o.workload, "pretrain, sft, lora, dpo or ppo (their memory differs)");
  command->add_option("--lora-rank", o.lora_rank, "LoRA adapter rank (--workload lora)")->check(CLI::PositiveNumber);
  command->add_option("--top", o.top, "layouts to print")->check(CLI::PositiveNumber);
  command->add_option("--output", o.output, "where to write the best layout's recipe");
  command->add_option("--hardware-dir", o.hardware_dir, "directory of GPU tables (default: the source tree's)");
  command->add_flag("--measure", o.measure, "train each of the top K for a few steps here and rank by measured speed");
  command->add_option("--measure-steps", o.measure_steps, "steps per measured layout (the first is not counted)")
      ->check(CLI::Range(2, 1000));
  command->add_option("--launcher", o.launcher,
                      "how --measure starts N ranks ({gpus} is replaced), e.g. \"srun -n {gpus}\"");
  return command;
}

AutoconfigOutcome autoconfigure(const AutoconfigCommandOptions& o) {
  Job job;
  job.workload = autoconfig::workload_from_name(o.workload);
  job.lora_rank = o.lora_rank;
  job.gpus = o.gpus;
  job.gpus_per_node = o.gpus_per_node;
  const bool from_recipe = is_recipe_path(o.model);
  if (o.measure) {
    TS_CHECK(from_recipe,
             "--measure trains each layout for a few steps and needs data: pass a recipe with "
             "data.data_path as --model instead of the preset ",
             o.model);
    TS_CHECK(job.workload == Workload::Pretrain, "--measure runs `tessera train`, which has no ", o.workload,
             " recipe yet; measure with --workload pretrain");
  }
  std::string base_text, base_origin;
  if (from_recipe) {
    std::ifstream in(o.model);
    TS_CHECK(in.good(), "--model ", o.model, ": cannot read the recipe");
    base_text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    base_origin = o.model;
    const Recipe recipe = Recipe::parse(base_text, base_origin);
    check_searchable(recipe);
    job.model = model_config_from_recipe(recipe);
    job.seq_length = o.seq_len > 0 ? o.seq_len : recipe.get_int("data.seq_length");
    job.global_batch_size = o.global_batch > 0 ? o.global_batch : recipe.get_int("train.global_batch_size");
    job.ddp_bucket_size_mb = recipe.get_float("parallel.ddp_bucket_size_mb");
    job.fsdp_prefetch = int(recipe.get_int("parallel.fsdp_prefetch"));
  } else {
    try {
      job.model = transformer_preset(o.model);
    } catch (const Error& e) {
      TS_CHECK(false, "--model: ", e.what(), "; or pass a recipe YAML");
    }
    TS_CHECK(o.global_batch > 0, "--global-batch is required with a preset (--model ", o.model,
             "); give the samples per optimizer step, e.g. --global-batch 512");
    job.seq_length = o.seq_len > 0 ? o.seq_len : std::min<int64_t>(2048, job.model.max_position_embeddings);
    job.global_batch_size = o.global_batch;
    base_text = preset_recipe_text(job.model);
    base_origin = "autoconfig preset recipe";
  }
  const autoconfig::GpuSpec gpu =
      autoconfig::load_gpu_spec(o.gpu, o.hardware_dir.empty() ? autoconfig::default_hardware_dir() : o.hardware_dir);

  AutoconfigOutcome outcome;
  outcome.result = autoconfig::search_layouts(job, gpu);
  outcome.table = autoconfig::format_table(outcome.result, job, gpu, o.top);
  if (o.measure) {
    const size_t k = std::min(o.top, outcome.result.ranked.size());
    outcome.measured =
        measure_layouts(o, job, base_text, base_origin,
                        {outcome.result.ranked.begin(), outcome.result.ranked.begin() + std::ptrdiff_t(k)});
    outcome.table += measured_table(outcome.measured);
    TS_CHECK(outcome.measured.front().tokens_per_second > 0,
             "--measure: every measured layout failed; the first: ", outcome.measured.front().failure);
  }
  if (job.workload == Workload::Pretrain) {
    const Evaluated& best =
        outcome.measured.empty() ? outcome.result.ranked.front() : outcome.measured.front().predicted;
    const Recipe written = Recipe::parse(base_text, base_origin, autoconfig::recipe_overrides(best.candidate, job));
    outcome.recipe_yaml = header(o, job, best, !from_recipe,
                                 outcome.measured.empty() ? 0.0 : outcome.measured.front().tokens_per_second) +
                          written.resolved_yaml();
  }
  return outcome;
}

int run_autoconfig_command(const AutoconfigCommandOptions& o) {
  AutoconfigOutcome outcome = autoconfigure(o);
  fmt::print("{}", outcome.table);
  if (outcome.recipe_yaml.empty()) {
    fmt::print("no recipe written: the trainer has no {} recipe yet; the table is for planning\n", o.workload);
    return 0;
  }
  std::ofstream out(o.output);
  TS_CHECK(out.good(), "--output ", o.output, ": cannot write the recipe");
  out << outcome.recipe_yaml;
  out.close();
  TS_CHECK(out.good(), "--output ", o.output, ": writing the recipe failed");
  fmt::print("wrote the best layout to {} (tessera train {})\n", o.output, o.output);
  return 0;
}

}  // namespace tessera
