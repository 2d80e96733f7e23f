#include "launcher/train_config.h"

#include <fmt/format.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>

#include "core/check.h"
#include "core/cuda/runtime.h"

namespace tessera {

namespace {

// The lora section (docs/lora.md). Each refusal names the recipe key: a target the model does
// not have, lora keys set while lora.rank leaves LoRA off.
LoraConfig lora_config_from(const Recipe& r) {
  LoraConfig lora;
  lora.rank = r.get_int("lora.rank");
  lora.alpha = r.get_float("lora.alpha");
  lora.dropout = r.get_float("lora.dropout");
  if (r.has("lora.target_modules")) lora.targets = r.get_list("lora.target_modules");
  if (!lora.enabled()) {
    // Keys that only mean something with adapters (a saved recipe repeats alpha and dropout's
    // defaults, so those are not counted as set).
    const bool targets = r.has("lora.target_modules"), base = !r.get_string("lora.base").empty();
    const char* key = targets ? "lora.target_modules" : "lora.base";
    TS_CHECK(!targets && !base, r.origin(key), ": ", key, " is set but lora.rank is ", lora.rank,
             " (LoRA off); set lora.rank > 0 (e.g. 8) or remove the lora section");
    return lora;
  }
  const LoraConfig defaults;
  for (const std::string& target : lora.targets) {
    TS_CHECK(std::find(defaults.targets.begin(), defaults.targets.end(), target) != defaults.targets.end(),
             r.origin("lora.target_modules"), ": lora.target_modules: unknown target '", target, "'; the targets are ",
             fmt::format("{}", fmt::join(defaults.targets, ", ")), did_you_mean(target, defaults.targets));
  }
  try {
    lora.validate();
  } catch (const Error& e) {
    TS_CHECK(false, r.origin("lora.rank"), ": ", e.what());
  }
  return lora;
}

}  // namespace

TransformerConfig model_config_from_recipe(const Recipe& r) {
  TransformerConfig m = transformer_preset(r.get_string("model.preset"));
  auto set_int = [&](const char* key, int64_t& field) {
    if (r.has(std::string("model.") + key)) field = r.get_int(std::string("model.") + key);
  };
  set_int("num_layers", m.num_layers);
  set_int("hidden_size", m.hidden_size);
  set_int("num_attention_heads", m.num_attention_heads);
  if (r.has("model.num_attention_heads") && !r.has("model.num_query_groups") &&
      m.num_query_groups == transformer_preset(r.get_string("model.preset")).num_attention_heads) {
    m.num_query_groups = m.num_attention_heads;  // a GPT preset without GQA stays without it
  }
  set_int("num_query_groups", m.num_query_groups);
  set_int("ffn_hidden_size", m.ffn_hidden_size);
  set_int("max_position_embeddings", m.max_position_embeddings);
  set_int("make_vocab_size_divisible_by", m.make_vocab_size_divisible_by);
  for (const char* key : {"num_layers", "hidden_size", "num_attention_heads", "num_query_groups", "ffn_hidden_size"}) {
    if (r.has(std::string("model.") + key)) {
      m.name += " (resized)";  // logs and checkpoints must not call a 3-layer model gpt2-124m
      break;
    }
  }
  m.hidden_dropout = r.get_float("model.hidden_dropout");
  m.init_method_std = r.get_float("model.init_method_std");
  if (r.has("model.rotary_base")) m.rotary_base = r.get_float("model.rotary_base");
  if (r.has("model.untie_embeddings_and_output_weights"))
    m.tie_word_embeddings = !r.get_bool("model.untie_embeddings_and_output_weights");
  m.lora = lora_config_from(r);
  try {
    m.validate();
  } catch (const Error& e) {
    TS_CHECK(false, "recipe model section (preset ", m.name, "): ", e.what());
  }
  return m;
}

namespace {

constexpr const char* kTp = "parallel.tensor_model_parallel_size";
constexpr const char* kPp = "parallel.pipeline_model_parallel_size";
constexpr const char* kVpp = "parallel.virtual_pipeline_model_parallel_size";
constexpr const char* kFirst = "parallel.decoder_first_pipeline_num_layers";
constexpr const char* kLast = "parallel.decoder_last_pipeline_num_layers";
constexpr const char* kLayout = "parallel.pipeline_model_parallel_layout";
constexpr const char* kSchedule = "parallel.pipeline_schedule";

// Parallelism that later issues bring: refused with what brings it.
void check_not_yet_supported(const Recipe& r) {
  constexpr const char* kCp = "parallel.context_parallel_size";
  TS_CHECK(r.get_int(kCp) == 1, r.origin(kCp), ": ", kCp, " = ", r.get_int(kCp),
           ": context parallelism arrives with ring attention; set it to 1");
}

// tp and pp from the recipe, dp from what is left of the world; checked against the world and the model.
ParallelLayout layout_from(const Recipe& r, int world_size, const TransformerConfig& model, int64_t seq_length) {
  check_not_yet_supported(r);
  ParallelLayout layout;
  layout.tp = int(r.get_int(kTp));
  layout.pp = int(r.get_int(kPp));
  const int model_parallel = layout.tp * layout.pp;
  TS_CHECK(world_size % model_parallel == 0, r.origin(layout.pp > 1 ? kPp : kTp), ": ", kTp, " = ", layout.tp,
           layout.pp > 1 ? fmt::format(" x {} = {}", kPp, layout.pp) : std::string(), " does not divide the ",
           world_size, " launched rank(s); launch a multiple of ", model_parallel, " ranks or change it");
  layout.dp = world_size / model_parallel;
  validate_layout(layout, world_size);
  try {
    validate_layout_for_model(layout, model.num_attention_heads, model.num_query_groups);
  } catch (const Error& e) {
    TS_CHECK(false, r.origin(kTp), ": ", kTp, " = ", layout.tp, ": ", e.what(), " (model.num_attention_heads ",
             model.num_attention_heads, ", model.num_query_groups ", model.num_query_groups, ")");
  }
  if (r.get_bool("parallel.sequence_parallel")) {
    TS_CHECK(layout.tp > 1, r.origin("parallel.sequence_parallel"),
             ": parallel.sequence_parallel needs tensor_model_parallel_size > 1");
    TS_CHECK(seq_length % layout.tp == 0, r.origin("data.seq_length"), ": data.seq_length ", seq_length,
             " must be divisible by ", kTp, " ", layout.tp, " with parallel.sequence_parallel");
  }
  return layout;
}

// parallel.zero_stage, with parallel.fsdp: true as another name for 3, and what stage 3 (FSDP,
// parallel/fsdp.h) cannot run with yet, refused before anything is built. One process: every
// stage has no effect, so nothing is refused there.
int zero_stage_from(const Recipe& r, const ParallelLayout& layout, int world_size) {
  constexpr const char* kZero = "parallel.zero_stage";
  constexpr const char* kFsdp = "parallel.fsdp";
  int stage = int(r.get_int(kZero));
  const bool fsdp = r.get_bool(kFsdp);
  if (fsdp) {
    TS_CHECK(stage == 3 || r.origin(kZero) == "default", r.origin(kFsdp), ": parallel.fsdp = true contradicts ", kZero,
             " = ", stage, " (", r.origin(kZero), "); FSDP is zero_stage 3: set one of them only");
    stage = 3;
  }
  if (stage != 3 || world_size == 1) return stage;
  const std::string origin = r.origin(fsdp ? kFsdp : kZero);
  const std::string what = fsdp ? "parallel.fsdp = true" : "parallel.zero_stage = 3";
  // Sequence parallelism sums the replicated norm gradients over tp after backward; FSDP has
  // reduce-scattered and dropped them by then.
  TS_CHECK(!r.get_bool("parallel.sequence_parallel"), origin, ": ", what,
           " with parallel.sequence_parallel is not supported (FSDP drops whole gradients before their tp sum); set "
           "sequence_parallel false or use zero_stage 1");
  TS_CHECK(layout.pp == 1, origin, ": ", what, " with ", kPp, " = ", layout.pp,
           " is not supported (FSDP shards the whole model, not a pipeline stage); use zero_stage 1 with pipelines");
  return stage;
}

// The recipe key a PipelineLayout refusal is about: a pipeline option the recipe sets that the
// message names, else pipeline_model_parallel_size itself.
std::string pipeline_key_of(const Recipe& r, const std::string& message) {
  const bool set[] = {!r.get_string(kLayout).empty(), r.has(kFirst), r.has(kLast), r.get_int(kVpp) != 1};
  const char* keys[] = {kLayout, kFirst, kLast, kVpp};
  for (int i = 0; i < 4; ++i) {
    if (set[i] && message.find(std::string(keys[i]).substr(std::string("parallel.").size())) != std::string::npos)
      return keys[i];
  }
  return kPp;
}

// The pipeline's layer split and schedule, checked against the model and the batch before any
// allocation: layers no layout can place, a layout string that does not cover every layer, an
// interleaved schedule with fewer micro-batches than stages are all one-line errors here.
void pipeline_from(const Recipe& r, TrainConfig& c) {
  PipelineLayoutOptions& p = c.pipeline;
  p.num_layers = c.model.num_layers;
  p.pp = c.layout.pp;
  if (r.get_int(kVpp) != 1) p.vpp = int(r.get_int(kVpp));  // unset: 1, or what the layout string implies
  if (r.has(kFirst)) p.decoder_first_pipeline_num_layers = r.get_int(kFirst);
  if (r.has(kLast)) p.decoder_last_pipeline_num_layers = r.get_int(kLast);
  p.pipeline_model_parallel_layout = r.get_string(kLayout);
  const bool options_set = p.vpp || p.decoder_first_pipeline_num_layers || p.decoder_last_pipeline_num_layers ||
                           !p.pipeline_model_parallel_layout.empty() || r.get_string(kSchedule) != "auto";
  if (c.layout.pp == 1) {
    TS_CHECK(!options_set, r.origin(kPp), ": pipeline options are set but ", kPp,
             " = 1; set it to the number of pipeline stages or remove them");
    return;
  }
  int vpp = 1;
  try {
    vpp = PipelineLayout(p).vpp();
  } catch (const Error& e) {
    std::string key = pipeline_key_of(r, e.what());
    TS_CHECK(false, r.origin(key), ": ", key, ": ", e.what());
  }
  std::string schedule = r.get_string(kSchedule);
  c.pipeline_schedule = schedule == "auto"
                            ? (vpp > 1 ? PipelineScheduleKind::Interleaved1F1B : PipelineScheduleKind::OneFOneB)
                            : schedule_kind_from_name(schedule);
  PipelineScheduleOptions options{c.pipeline_schedule, c.layout.pp, vpp, int(c.grad_accumulation_steps())};
  try {
    validate_schedule_options(options);
  } catch (const Error& e) {
    TS_CHECK(false, r.origin(kSchedule), ": ", kSchedule, " ", schedule_kind_name(c.pipeline_schedule), " with ", kVpp,
             " ", vpp, " and ", options.num_microbatches,
             " micro-batches (train.global_batch_size / (micro_batch_size x data-parallel size)): ", e.what());
  }
  TS_CHECK(c.zero_stage < 2, r.origin("parallel.zero_stage"), ": parallel.zero_stage = 2 with ", kPp, " = ",
           c.layout.pp, " is not supported (pipeline stages reduce gradients after the whole schedule); use 1");
  TS_CHECK(c.precision != Precision::FP16, r.origin("train.precision"), ": train.precision = fp16 with ", kPp, " = ",
           c.layout.pp, " is not supported (the overflow check is not agreed across stages); use bf16");
}

void check_data_paths(const Recipe& r, const std::vector<std::string>& words) {
  // Words alternate weight, prefix when there is more than one; a prefix names PREFIX.bin/.idx.
  for (size_t i = 0; i < words.size(); ++i) {
    if (words.size() > 1 && i % 2 == 0) continue;
    for (const char* suffix : {".bin", ".idx"}) {
      std::string file = words[i] + suffix;
      TS_CHECK(std::filesystem::exists(file), r.origin("data.data_path"), ": data.data_path: ", file,
               " does not exist (preprocess text with `tessera preprocess --output ", words[i], "`)");
    }
  }
}

void sft_data_from(const Recipe& r, TrainConfig& c) {
  SftDataConfig& sft = c.sft;
  if (r.has("data.sft_train_path")) sft.train_paths = r.get_list("data.sft_train_path");
  if (r.has("data.sft_valid_path")) sft.valid_paths = r.get_list("data.sft_valid_path");
  if (!sft.enabled()) return;
  TS_CHECK(c.data_path.empty(), r.origin("data.sft_train_path"),
           ": data.sft_train_path and data.data_path are both set; an SFT run reads chat JSONL only, so drop one");
  for (const std::vector<std::string>* files : {&sft.train_paths, &sft.valid_paths})
    for (const std::string& file : *files)
      TS_CHECK(std::filesystem::exists(file), r.origin(files == &sft.train_paths ? "data.sft_train_path"
                                                                                 : "data.sft_valid_path"),
               ": ", file, " does not exist (scripts/make_arithmetic_chat.py writes example chat JSONL)");
  sft.chat_template = r.get_string("data.chat_template");
  sft.packing = r.get_string("data.sft_packing");
  sft.overflow = r.get_string("data.sft_overflow");
  sft.tokenizer_model = r.get_string("data.tokenizer_model");
  sft.vocab_file = r.get_string("data.vocab_file");
  sft.merge_file = r.get_string("data.merge_file");
  TS_CHECK(!sft.tokenizer_model.empty() || (!sft.vocab_file.empty() && !sft.merge_file.empty()),
           r.origin("data.sft_train_path"),
           ": an SFT run tokenizes its chat JSONL, so it needs the tokenizer: set data.tokenizer_model (tokenizer.json "
           "or a folder) or data.vocab_file and data.merge_file");
}

Device device_from(const Recipe& r, const LaunchContext& launch) {
  std::string name = r.get_string("train.device");
  int gpus = cuda_device_count();
  if (name == "cpu" || (name == "auto" && gpus == 0)) return Device::cpu();
  TS_CHECK(gpus > 0, r.origin("train.device"), ": train.device = cuda but no GPU is visible; use cpu or auto");
  TS_CHECK(launch.local_rank < gpus, r.origin("train.device"), ": train.device = ", name, ": rank ", launch.rank,
           " is local rank ", launch.local_rank, " of its node but only ", gpus, " GPU(s) are visible; launch at most ",
           gpus, " ranks per node");
  return Device::cuda(launch.local_rank);
}

// A captured graph replays fixed addresses and fixed host values: one process on one GPU (no
// collectives inside the step), no dropout (its random offsets advance on the host), and no fp16
// loss scale (a host value that changes).
void check_cuda_graph(const Recipe& r, const TrainConfig& c) {
  if (!c.cuda_graph) return;
  const std::string key = r.origin("train.cuda_graph") + ": train.cuda_graph = true";
  TS_CHECK(c.device.is_cuda(), key, " needs train.device cuda (the device is ", c.device.str(),
           "); set train.cuda_graph: false");
  TS_CHECK(c.layout.product() == 1, key, " runs one process on one GPU, but the layout has ", c.layout.product(),
           " ranks; set train.cuda_graph: false for multi-rank runs");
  TS_CHECK(c.precision != Precision::FP16, key, " with train.precision = fp16 is not supported (the loss scale "
           "changes between steps); use bf16");
  TS_CHECK(c.model.hidden_dropout == 0.0, key, " with model.hidden_dropout = ", c.model.hidden_dropout,
           " is not supported (dropout's random offsets would repeat every replay); set hidden_dropout: 0 or "
           "train.cuda_graph: false");
}

// What a LoRA run (model.lora.rank > 0) can start from and run with, checked before any work.
void lora_run_from(const Recipe& r, TrainConfig& c) {
  c.lora_base = r.get_string("lora.base");
  if (!c.model.lora.enabled()) return;
  const std::string rank = fmt::format("{}: lora.rank = {}", r.origin("lora.rank"), c.model.lora.rank);
  if (!c.lora_base.empty()) {
    TS_CHECK(std::filesystem::exists(c.lora_base), r.origin("lora.base"), ": lora.base = ", c.lora_base,
             " does not exist; point it at a checkpoint of the base model (an iter_NNNNNNN folder of `tessera train`, "
             "an .h5 file of `tessera import`, or their directory)");
  }
  TS_CHECK(c.layout.pp == 1, rank, " with ", kPp, " = ", c.layout.pp,
           " is not supported yet (the pipeline stages' gradient norm and buckets take every parameter); use "
           "pipeline_model_parallel_size 1");
  TS_CHECK(c.zero_stage != 3 || c.layout.product() == 1, rank,
           " with parallel.zero_stage = 3 is not supported (FSDP shards every parameter, frozen or not, and would "
           "gather the frozen base each step for nothing); use zero_stage 1 or 2, which shard the adapters' state");
  // LoRA checkpoints (launcher/lora_checkpoint.h) hold the adapters' AdamW state whole; ZeRO's is
  // flat shards over dp.
  const bool checkpoints = !c.save_dir.empty() || (c.resume != "auto" && c.resume != "none");
  TS_CHECK(!checkpoints || c.zero_stage == 0 || c.layout.product() == 1, rank,
           " with checkpoints (checkpoint.save or a train.resume path) and parallel.zero_stage = ", c.zero_stage,
           " is not supported yet (adapter checkpoints hold the adapters' optimizer state whole); use zero_stage 0 "
           "(the adapters' state is small) or leave checkpoint.save empty and train.resume auto");
  TS_CHECK(!c.cuda_graph, r.origin("train.cuda_graph"),
           ": train.cuda_graph = true with LoRA is not supported yet; set train.cuda_graph: false");
}

}  // namespace

TrainConfig train_config_from_recipe(const Recipe& r, const LaunchContext& launch) {
  TrainConfig c;
  c.model = model_config_from_recipe(r);
  c.recompute = r.get_string("model.recompute_granularity") == "full";
  if (r.has("data.data_path")) c.data_path = r.get_list("data.data_path");
  sft_data_from(r, c);
  if (!c.sft.enabled()) {
    TS_CHECK(!c.data_path.empty(), r.origin("data.data_path"),
             ": data.data_path is required (indexed datasets from `tessera preprocess`), or data.sft_train_path for "
             "chat JSONL");
    check_data_paths(r, c.data_path);
  }
  c.split = r.get_string("data.split");
  c.seq_length = r.get_int("data.seq_length");
  TS_CHECK(c.seq_length <= c.model.max_position_embeddings, r.origin("data.seq_length"), ": data.seq_length ",
           c.seq_length, " exceeds the model's max_position_embeddings ", c.model.max_position_embeddings);
  c.num_workers = r.get_int("data.num_workers");
  c.layout = layout_from(r, launch.world_size, c.model, c.seq_length);
  c.sequence_parallel = r.get_bool("parallel.sequence_parallel");
  c.ddp_bucket_size_mb = r.get_float("parallel.ddp_bucket_size_mb");
  TS_CHECK(c.ddp_bucket_size_mb > 0.0, r.origin("parallel.ddp_bucket_size_mb"),
           ": parallel.ddp_bucket_size_mb must be > 0, got ", c.ddp_bucket_size_mb);
  c.zero_stage = zero_stage_from(r, c.layout, launch.world_size);
  c.fsdp_prefetch = int(r.get_int("parallel.fsdp_prefetch"));
  // ZeRO-2 drops each parameter's gradient once it is staged for the reduce-scatter, before
  // sequence parallelism's tp sum of the norm gradients could run.
  TS_CHECK(c.zero_stage < 2 || !c.sequence_parallel, r.origin("parallel.zero_stage"),
           ": parallel.zero_stage = 2 with parallel.sequence_parallel is not supported yet; use zero_stage 1");
  c.distributed_timeout_minutes = r.get_float("parallel.distributed_timeout_minutes");
  TS_CHECK(c.distributed_timeout_minutes > 0.0, r.origin("parallel.distributed_timeout_minutes"),
           ": parallel.distributed_timeout_minutes must be > 0, got ", c.distributed_timeout_minutes);

  c.adamw.lr = r.get_float("optimizer.lr");
  c.adamw.beta1 = r.get_float("optimizer.adam_beta1");
  c.adamw.beta2 = r.get_float("optimizer.adam_beta2");
  c.adamw.eps = r.get_float("optimizer.adam_eps");
  c.adamw.weight_decay = r.get_float("optimizer.weight_decay");
  c.clip_grad = r.get_float("optimizer.clip_grad");

  c.micro_batch_size = r.get_int("train.micro_batch_size");
  c.global_batch_size = r.get_int("train.global_batch_size");
  TS_CHECK(c.global_batch_size % (c.micro_batch_size * c.layout.dp) == 0, r.origin("train.global_batch_size"),
           ": train.global_batch_size ", c.global_batch_size, " is not divisible by train.micro_batch_size ",
           c.micro_batch_size, " x data-parallel size ", c.layout.dp, " (world ", launch.world_size, " / ", kTp, " ",
           c.layout.tp, c.layout.pp > 1 ? fmt::format(" / {} {}", kPp, c.layout.pp) : std::string(), ")");
  c.train_iters = r.get_int("train.train_iters");
  c.eval_interval = r.get_int("train.eval_interval");
  c.eval_iters = r.get_int("train.eval_iters");
  c.seed = static_cast<uint64_t>(r.get_int("train.seed"));
  std::string precision = r.get_string("train.precision");
  c.precision = precision == "bf16" ? Precision::BF16 : precision == "fp16" ? Precision::FP16 : Precision::FP32;
  c.device = device_from(r, launch);
  c.cuda_graph = r.get_bool("train.cuda_graph");
  check_cuda_graph(r, c);
  // Packed SFT rows change their document layout every step (a graph replays one) and weigh the
  // loss by the step's trained tokens (the pipeline schedule fixes the weight up front).
  TS_CHECK(!c.sft.enabled() || !c.cuda_graph, r.origin("train.cuda_graph"),
           ": train.cuda_graph = true with SFT data (data.sft_train_path) is not supported: packed rows change "
           "shape every step; set train.cuda_graph: false");
  TS_CHECK(!c.sft.enabled() || c.layout.pp == 1, r.origin("data.sft_train_path"),
           ": SFT data with pipeline parallelism is not supported yet (the loss weight per trained token is set per "
           "step); use parallel.pipeline_model_parallel_size: 1");
  // The fp16 loss scaler decides to skip a step from this rank's gradients alone; tp ranks hold
  // different shards, so they could disagree.
  TS_CHECK(c.precision != Precision::FP16 || c.layout.tp == 1, r.origin("train.precision"),
           ": train.precision = fp16 with ", kTp, " = ", c.layout.tp,
           " is not supported (the overflow check is not agreed across tp ranks); use bf16");
  // The loss scaler reads whole gradients; ZeRO leaves each rank only its shard.
  TS_CHECK(c.precision != Precision::FP16 || c.zero_stage == 0, r.origin("train.precision"),
           ": train.precision = fp16 with parallel.zero_stage = ", c.zero_stage,
           " is not supported (the loss scaler needs whole gradients); use bf16 or zero_stage 0");
  // bf16 gradients take the parameters' dtype (parallel/distributed_data_parallel.h).
  const bool bf16_grads = r.get_bool("parallel.grad_reduce_in_bf16");
  TS_CHECK(!bf16_grads || c.precision == Precision::BF16, r.origin("parallel.grad_reduce_in_bf16"),
           ": parallel.grad_reduce_in_bf16 = true needs train.precision = bf16 (gradients take the parameters' dtype); "
           "set train.precision: bf16 or grad_reduce_in_bf16: false, got precision ",
           precision);
  c.grad_reduce_dtype = bf16_grads ? DType::BF16 : DType::F32;
  pipeline_from(r, c);
  c.pipeline_trace = r.get_bool("logging.pipeline_trace");
  c.resume = r.get_string("train.resume");
  if (r.has("train.exit_interval")) c.exit_interval = r.get_int("train.exit_interval");

  c.schedule.peak_lr = c.adamw.lr;
  c.schedule.min_lr = r.get_float("optimizer.min_lr");
  TS_CHECK(c.schedule.min_lr <= c.schedule.peak_lr, r.origin("optimizer.min_lr"), ": optimizer.min_lr ",
           c.schedule.min_lr, " exceeds optimizer.lr ", c.schedule.peak_lr);
  c.schedule.warmup_steps = r.get_int("scheduler.lr_warmup_iters");
  c.schedule.decay_steps = r.has("scheduler.lr_decay_iters") ? r.get_int("scheduler.lr_decay_iters") : c.train_iters;
  TS_CHECK(c.schedule.decay_steps > c.schedule.warmup_steps, r.origin("scheduler.lr_warmup_iters"),
           ": scheduler.lr_warmup_iters ", c.schedule.warmup_steps, " must be below the decay length ",
           c.schedule.decay_steps, " (scheduler.lr_decay_iters, default train.train_iters)");
  c.schedule.style = lr_decay_style_from_name(r.get_string("scheduler.lr_decay_style"));
  if (c.schedule.style == LrDecayStyle::WarmupStableDecay) {
    TS_CHECK(r.has("scheduler.lr_wsd_decay_iters"), r.origin("scheduler.lr_decay_style"),
             ": lr_decay_style WSD needs scheduler.lr_wsd_decay_iters");
    c.schedule.wsd_decay_steps = r.get_int("scheduler.lr_wsd_decay_iters");
  }
  LrSchedule check_schedule(c.schedule);  // throws on an inconsistent schedule

  c.save_dir = r.get_string("checkpoint.save");
  c.save_interval = r.get_int("checkpoint.save_interval");
  c.keep_last = r.get_int("checkpoint.keep_last");
  c.async_save = r.get_bool("checkpoint.async_save");
  c.log_interval = r.get_int("logging.log_interval");
  c.run_dir = r.get_string("logging.run_dir");
  lora_run_from(r, c);
  c.resolved_yaml = r.resolved_yaml();
  return c;
}

}  // namespace tessera
