// The sbatch script of `tessera launch` (see slurm_script.h).
#include "launcher/slurm_script.h"

#include <fmt/format.h>

#include <regex>
#include <sstream>

#include "core/check.h"

namespace tessera {

namespace {

std::string quoted_words(const std::vector<std::string>& words) {
  std::string text;
  for (const std::string& w : words) {
    if (!text.empty()) text += ' ';
    text += shell_quote(w);
  }
  return text;
}

// A bash `case` giving each array task its own overrides.
std::string sweep_block(const std::vector<std::vector<std::string>>& sweep) {
  if (sweep.empty()) return "";
  std::string block = "# The sweep: array task i adds line i of the sweep file.\ncase \"${SLURM_ARRAY_TASK_ID}\" in\n";
  for (size_t i = 0; i < sweep.size(); ++i)
    block += fmt::format("  {}) overrides+=({}) ;;\n", i, quoted_words(sweep[i]));
  return block + "esac";
}

}  // namespace

std::string render_template(const std::string& text, const std::map<std::string, std::string>& values,
                            const std::string& template_name) {
  std::istringstream lines(text);
  std::string out;
  int number = 0;
  for (std::string line; std::getline(lines, line);) {
    ++number;
    std::string rendered;
    bool only_placeholders = true;
    size_t at = 0;
    for (size_t open; (open = line.find("{{", at)) != std::string::npos;) {
      size_t close = line.find("}}", open);
      TS_CHECK(close != std::string::npos, template_name, ":", number, ": '{{' without '}}'");
      std::string name = line.substr(open + 2, close - open - 2);
      auto value = values.find(name);
      TS_CHECK(value != values.end(), template_name, ":", number, ": unknown placeholder {{", name,
               "}}; `tessera launch` fills in: ", [&] {
                 std::string known;
                 for (const auto& [key, _] : values) {
                   if (!known.empty()) known += ", ";
                   known += key;
                 }
                 return known;
               }());
      if (line.find_first_not_of(" \t", at) < open) only_placeholders = false;
      rendered.append(line, at, open - at);
      rendered += value->second;
      at = close + 2;
    }
    if (line.find_first_not_of(" \t", at) != std::string::npos) only_placeholders = false;
    rendered += line.substr(at);
    bool placeholder_line = line.find("{{") != std::string::npos && only_placeholders;
    if (placeholder_line && rendered.find_first_not_of(" \t") == std::string::npos) continue;
    out += rendered + "\n";
  }
  return out;
}

int64_t slurm_time_seconds(const std::string& text) {
  static const std::regex format(R"((?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?)");
  std::smatch m;
  TS_CHECK(std::regex_match(text, m, format), "--time '", text,
           "' is not a Slurm time: use minutes, HH:MM:SS or D-HH:MM:SS (e.g. --time 04:00:00)");
  auto part = [&](int i) { return m[i].matched ? std::stoll(m[i].str()) : 0ll; };
  int64_t seconds;
  if (m[1].matched) {  // days-hours[:minutes[:seconds]]
    seconds = part(1) * 86400 + part(2) * 3600 + part(3) * 60 + part(4);
  } else if (m[4].matched) {  // hours:minutes:seconds
    seconds = part(2) * 3600 + part(3) * 60 + part(4);
  } else {  // minutes[:seconds]
    seconds = part(2) * 60 + part(3);
  }
  TS_CHECK(seconds > 0, "--time '", text, "' is zero; give the job a time limit, e.g. --time 04:00:00");
  return seconds;
}

std::string shell_quote(const std::string& word) {
  std::string quoted = "'";
  for (char c : word) {
    if (c == '\'')
      quoted += "'\\''";
    else
      quoted += c;
  }
  return quoted + "'";
}

std::string sbatch_script(const SbatchJob& job, const std::string& template_text, const std::string& template_name) {
  TS_CHECK(job.signal_seconds > 0 && job.signal_seconds <= 65535, "--signal-seconds ", job.signal_seconds,
           " must be in 1..65535 (Slurm's limit for the warning's lead)");
  if (!job.time.empty()) {
    int64_t limit = slurm_time_seconds(job.time);
    TS_CHECK(job.signal_seconds < limit, "--signal-seconds ", job.signal_seconds, " is not below --time ", job.time,
             " (", limit, " s): the warning would come before the job starts; lower --signal-seconds");
  }
  std::vector<std::string> options;
  if (job.request_gpus) options.push_back(fmt::format("#SBATCH --gpus-per-node={}", job.tasks_per_node));
  if (job.cpus_per_task > 0) options.push_back(fmt::format("#SBATCH --cpus-per-task={}", job.cpus_per_task));
  if (!job.partition.empty()) options.push_back("#SBATCH --partition=" + job.partition);
  if (!job.account.empty()) options.push_back("#SBATCH --account=" + job.account);
  if (!job.time.empty()) options.push_back("#SBATCH --time=" + job.time);
  if (!job.sweep.empty()) options.push_back(fmt::format("#SBATCH --array=0-{}", job.sweep.size() - 1));
  options.push_back("#SBATCH --chdir=" + job.work_dir);
  std::string sbatch_options;
  for (const std::string& o : options) {
    if (!sbatch_options.empty()) sbatch_options += '\n';
    sbatch_options += o;
  }

  const bool array = !job.sweep.empty();
  std::map<std::string, std::string> values = {
      {"description", job.description},
      {"job_name", job.job_name},
      {"nodes", std::to_string(job.nodes)},
      {"tasks_per_node", std::to_string(job.tasks_per_node)},
      {"sbatch_options", sbatch_options},
      {"log_dir", job.log_dir},
      {"log_pattern", array ? "job-%A_%a.out" : "job-%j.out"},
      {"log_name", array ? "job-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.out" : "job-${SLURM_JOB_ID}.out"},
      {"signal_seconds", std::to_string(job.signal_seconds)},
      {"overrides", quoted_words(job.overrides)},
      {"sweep", sweep_block(job.sweep)},
      {"tessera", shell_quote(job.tessera)},
      {"recipe", shell_quote(job.recipe)},
      {"connect_timeout", fmt::format("{}", job.connect_timeout_seconds)},
  };
  return render_template(template_text, values, template_name);
}

}  // namespace tessera
