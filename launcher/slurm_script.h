// The sbatch script of `tessera launch`: the template (slurm/tessera.sbatch.in) with its
// {{placeholders}} filled in, and the Slurm values checked on the way (time limits, the warning
// signal's lead). Pure text: nothing here touches files or runs Slurm.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace tessera {

// Replaces every {{name}} of `text` by values.at(name); a line that held only a placeholder whose
// value is empty is dropped. Throws naming `template_name`, the line and the placeholder when a
// name has no value.
std::string render_template(const std::string& text, const std::map<std::string, std::string>& values,
                            const std::string& template_name);

// Slurm's time formats (minutes, minutes:seconds, hours:minutes:seconds, days-hours,
// days-hours:minutes, days-hours:minutes:seconds) in seconds; throws naming --time otherwise.
int64_t slurm_time_seconds(const std::string& text);

// `word` single-quoted for bash ('it'\''s').
std::string shell_quote(const std::string& word);

struct SbatchJob {
  std::string description;  // the script's first comment line
  std::string job_name;
  int nodes = 1;
  int tasks_per_node = 1;
  bool request_gpus = true;              // --gpus-per-node = tasks_per_node
  std::string partition, account, time;  // empty: the cluster's default
  int cpus_per_task = 0;                 // 0: the cluster's default
  int signal_seconds = 300;              // the warning's lead before the time limit
  double connect_timeout_seconds = 120;
  std::string work_dir, log_dir, tessera, recipe;
  std::vector<std::string> overrides;           // every job's
  std::vector<std::vector<std::string>> sweep;  // empty, or one list of overrides per array task
};

// The script for `job` from the template text; checks the signal's lead against the time limit.
std::string sbatch_script(const SbatchJob& job, const std::string& template_text, const std::string& template_name);

}  // namespace tessera
