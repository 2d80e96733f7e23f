// Tensor-parallel checkpoint folders and tp-size checks (see checkpoint_shards.h).
#include "launcher/checkpoint_shards.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <regex>

#include "core/check.h"
#include "launcher/checkpoint_directory.h"

namespace tessera {

namespace fs = std::filesystem;

namespace {

constexpr const char* kTpKey = "parallel.tensor_model_parallel_size";

std::string shard_folder_name(int tp_rank, int tp) { return fmt::format("tp{}-of-{}", tp_rank, tp); }

constexpr const char* kZeroKey = "parallel.zero_stage";
constexpr const char* kPpKey = "parallel.pipeline_model_parallel_size";

std::string pipeline_folder_name(int tp_rank, int tp, int pp_rank, int pp) {
  return fmt::format("tp{}-pp{}-of-{}x{}", tp_rank, pp_rank, tp, pp);
}

// The `parallel` section of the recipe stored in the checkpoint (null when it has none: a
// checkpoint from before parallelism, every size 1).
YAML::Node saved_parallel_section(const TrainingCheckpoint& checkpoint, const std::string& source) {
  try {
    const YAML::Node root = YAML::Load(checkpoint.config_yaml);
    const YAML::Node parallel = root.IsMap() ? root["parallel"] : YAML::Node();
    return parallel && parallel.IsMap() ? parallel : YAML::Node();
  } catch (const YAML::Exception& e) {
    TS_CHECK(false, source, ": the recipe stored in the checkpoint does not parse (", e.what(), ")");
  }
  return YAML::Node();
}

template <typename T>
T saved_parallel_value(const TrainingCheckpoint& checkpoint, const std::string& source, const char* key, T fallback) {
  const YAML::Node parallel = saved_parallel_section(checkpoint, source);
  if (!parallel || !parallel[key]) return fallback;
  try {
    return parallel[key].as<T>();
  } catch (const YAML::Exception& e) {
    TS_CHECK(false, source, ": parallel.", key, " in the recipe stored in the checkpoint does not parse (", e.what(),
             ")");
  }
  return fallback;
}

}  // namespace

std::string tensor_parallel_checkpoint_directory(const std::string& directory, int tp_rank, int tp) {
  TS_CHECK(tp >= 1 && tp_rank >= 0 && tp_rank < tp, "checkpoint: tp rank ", tp_rank, " of ", tp, " is out of range");
  if (tp == 1 || directory.empty()) return directory;
  return (fs::path(directory) / shard_folder_name(tp_rank, tp)).string();
}

std::string tensor_parallel_resume(const std::string& resume, int tp_rank, int tp) {
  if (tp == 1 || resume == "auto" || resume == "none") return resume;
  TS_CHECK(fs::is_directory(resume), "train.resume: ", resume, " is a single file, but with ", kTpKey, " = ", tp,
           " every tp rank loads its own shard; give the checkpoint directory (the one holding tp0-of-", tp, "/)");
  return tensor_parallel_checkpoint_directory(resume, tp_rank, tp);
}

void check_checkpoint_directory_tensor_parallel_size(const std::string& directory, int tp, const std::string& key) {
  if (directory.empty() || !fs::is_directory(directory)) return;
  static const std::regex kShard(R"(tp(\d+)-of-(\d+))");
  for (const fs::directory_entry& entry : fs::directory_iterator(directory)) {
    std::smatch match;
    std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !std::regex_match(name, match, kShard)) continue;
    int saved_tp = std::stoi(match[2].str());
    TS_CHECK(saved_tp == tp, key, ": ", directory, " holds checkpoint shards of a run with ", kTpKey, " = ", saved_tp,
             " (", name, "/) but this run has ", tp, "; resume with ", kTpKey, " = ", saved_tp,
             ", or save into another directory");
  }
  if (tp > 1) {
    std::vector<CheckpointFileEntry> single = list_checkpoints(directory);
    TS_CHECK(single.empty(), key, ": ", directory, " holds checkpoints of a run with ", kTpKey, " = 1 (",
             single.empty() ? "" : single.back().path, ") but this run has ", tp, "; resume with ", kTpKey,
             " = 1, or save into another directory");
  }
}

std::string model_parallel_checkpoint_directory(const std::string& directory, int tp_rank, int tp, int pp_rank,
                                                int pp) {
  if (pp == 1) return tensor_parallel_checkpoint_directory(directory, tp_rank, tp);
  TS_CHECK(tp >= 1 && tp_rank >= 0 && tp_rank < tp && pp_rank >= 0 && pp_rank < pp, "checkpoint: tp rank ", tp_rank,
           " of ", tp, " / pp rank ", pp_rank, " of ", pp, " is out of range");
  if (directory.empty()) return directory;
  return (fs::path(directory) / pipeline_folder_name(tp_rank, tp, pp_rank, pp)).string();
}

std::string model_parallel_resume(const std::string& resume, int tp_rank, int tp, int pp_rank, int pp) {
  if (pp == 1) return tensor_parallel_resume(resume, tp_rank, tp);
  if (resume == "auto" || resume == "none") return resume;
  TS_CHECK(fs::is_directory(resume), "train.resume: ", resume, " is a single file, but with ", kPpKey, " = ", pp,
           " every (tp, pp) rank loads its own piece; give the checkpoint directory (the one holding ",
           pipeline_folder_name(0, tp, 0, pp), "/)");
  return model_parallel_checkpoint_directory(resume, tp_rank, tp, pp_rank, pp);
}

void check_checkpoint_directory_model_parallel_size(const std::string& directory, int tp, int pp,
                                                    const std::string& key) {
  if (directory.empty() || !fs::is_directory(directory)) return;
  static const std::regex kShard(R"(tp(\d+)-pp(\d+)-of-(\d+)x(\d+))");
  for (const fs::directory_entry& entry : fs::directory_iterator(directory)) {
    std::smatch match;
    std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !std::regex_match(name, match, kShard)) continue;
    int saved_tp = std::stoi(match[3].str()), saved_pp = std::stoi(match[4].str());
    TS_CHECK(saved_tp == tp && saved_pp == pp, key, ": ", directory, " holds checkpoint pieces of a run with ", kTpKey,
             " = ", saved_tp, " and ", kPpKey, " = ", saved_pp, " (", name, "/) but this run has ", tp, " and ", pp,
             "; resume with the sizes it was saved with, or save into another directory");
  }
  if (pp == 1) {
    check_checkpoint_directory_tensor_parallel_size(directory, tp, key);
    return;
  }
  // A pipeline run finds no tensor-parallel folders or single-rank files where it saves.
  static const std::regex kTpShard(R"(tp(\d+)-of-(\d+))");
  for (const fs::directory_entry& entry : fs::directory_iterator(directory)) {
    std::string name = entry.path().filename().string();
    TS_CHECK(!entry.is_directory() || !std::regex_match(name, kTpShard), key, ": ", directory,
             " holds checkpoint shards of a run with ", kPpKey, " = 1 (", name, "/) but this run has ", pp,
             "; resume with ", kPpKey, " = 1, or save into another directory");
  }
  std::vector<CheckpointFileEntry> single = list_checkpoints(directory);
  TS_CHECK(single.empty(), key, ": ", directory, " holds checkpoints of a single-rank run (",
           single.empty() ? "" : single.back().path, ") but this run has ", kPpKey, " = ", pp,
           "; resume with the sizes it was saved with, or save into another directory");
}

void check_checkpoint_pipeline_parallel_size(const TrainingCheckpoint& checkpoint, const std::string& source, int pp) {
  const int saved_pp = saved_parallel_value(checkpoint, source, "pipeline_model_parallel_size", 1);
  TS_CHECK(saved_pp == pp, source, ": the checkpoint was saved with ", kPpKey, " = ", saved_pp, " but this run has ",
           pp, "; resume with ", kPpKey, " = ", saved_pp, " (pieces cannot be re-split yet)");
}

std::string data_parallel_checkpoint_directory(const std::string& directory, int dp_rank, int dp) {
  TS_CHECK(dp >= 1 && dp_rank >= 0 && dp_rank < dp, "checkpoint: dp rank ", dp_rank, " of ", dp, " is out of range");
  if (directory.empty()) return directory;
  return (fs::path(directory) / fmt::format("dp{}-of-{}", dp_rank, dp)).string();
}

std::string data_parallel_resume(const std::string& resume, int dp_rank, int dp) {
  if (resume == "auto" || resume == "none") return resume;
  TS_CHECK(fs::is_directory(resume), "train.resume: ", resume, " is a single file, but with ", kZeroKey,
           " >= 1 every data-parallel rank loads its own optimizer shard; give the checkpoint directory (the one "
           "holding dp0-of-",
           dp, "/)");
  return data_parallel_checkpoint_directory(resume, dp_rank, dp);
}

void check_checkpoint_directory_data_parallel_size(const std::string& directory, int dp, bool zero,
                                                   const std::string& key) {
  if (directory.empty() || !fs::is_directory(directory)) return;
  static const std::regex kShard(R"(dp(\d+)-of-(\d+))");
  for (const fs::directory_entry& entry : fs::directory_iterator(directory)) {
    std::smatch match;
    std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !std::regex_match(name, match, kShard)) continue;
    int saved_dp = std::stoi(match[2].str());
    TS_CHECK(zero, key, ": ", directory, " holds ZeRO optimizer shards (", name, "/) but this run has ", kZeroKey,
             " = 0; resume with the ", kZeroKey, " and data-parallel size ", saved_dp,
             " it was saved with, or save into another directory");
    TS_CHECK(saved_dp == dp, key, ": ", directory, " holds ZeRO optimizer shards of a run with data-parallel size ",
             saved_dp, " (", name, "/) but this run has ", dp, "; launch ", saved_dp,
             " data-parallel ranks to resume (sharded optimizer state cannot be resharded yet), or save into "
             "another directory");
  }
  if (zero) {
    std::vector<CheckpointFileEntry> plain = list_checkpoints(directory);
    TS_CHECK(plain.empty(), key, ": ", directory, " holds checkpoints of a run without ZeRO (",
             plain.empty() ? "" : plain.back().path, ") but this run has ", kZeroKey, " >= 1; resume with ", kZeroKey,
             " = 0, or save into another directory");
  }
}

void check_checkpoint_tensor_parallel_size(const TrainingCheckpoint& checkpoint, const std::string& source, int tp) {
  // A recipe without the key (or a checkpoint from before tensor parallelism) means tp = 1.
  const int saved_tp = saved_parallel_value(checkpoint, source, "tensor_model_parallel_size", 1);
  TS_CHECK(saved_tp == tp, source, ": the checkpoint was saved with ", kTpKey, " = ", saved_tp, " but this run has ",
           tp, "; resume with ", kTpKey, " = ", saved_tp, " (shards cannot be resharded yet)");
}

void check_checkpoint_zero_stage(const TrainingCheckpoint& checkpoint, const std::string& source, int zero_stage) {
  const bool saved_fsdp = saved_parallel_value(checkpoint, source, "fsdp", false);
  const int saved = saved_fsdp ? 3 : saved_parallel_value(checkpoint, source, "zero_stage", 0);
  TS_CHECK((saved == 3) == (zero_stage == 3), source, ": the checkpoint holds the optimizer shards of a run with ",
           kZeroKey, " = ", saved, " but this run has ", zero_stage,
           "; ZeRO-3 shards by FSDP unit and ZeRO-1/2 by "
           "gradient bucket, so resume with ",
           kZeroKey, " = ", saved, ", or save into another directory");
}

}  // namespace tessera
