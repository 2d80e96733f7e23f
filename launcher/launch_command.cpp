// `tessera launch` (see launch_command.h).
#include "launcher/launch_command.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/check.h"
#include "launcher/recipe.h"
#include "launcher/slurm_script.h"
#include "launcher/train_config.h"

extern char** environ;

namespace tessera {

namespace {

namespace fs = std::filesystem;

constexpr const char* kTemplate = "slurm/tessera.sbatch.in";

// One job of the launch: its overrides (the command line's, then its sweep line's).
struct Job {
  std::vector<std::string> overrides;
  std::string run_dir;
};

bool sets_key(const std::vector<std::string>& overrides, const std::string& key) {
  for (const std::string& o : overrides)
    if (o.rfind(key + "=", 0) == 0) return true;
  return false;
}

std::vector<std::vector<std::string>> read_sweep(const std::string& path) {
  std::ifstream in(path);
  TS_CHECK(in.good(), "--sweep ", path, " cannot be read (does it exist?)");
  std::vector<std::vector<std::string>> lines;
  for (std::string line; std::getline(in, line);) {
    line = line.substr(0, line.find('#'));
    std::istringstream words(line);
    std::vector<std::string> overrides;
    for (std::string word; words >> word;) overrides.push_back(word);
    if (!overrides.empty()) lines.push_back(overrides);
  }
  TS_CHECK(!lines.empty(), "--sweep ", path, " holds no job: write one line of section.key=value overrides per job");
  return lines;
}

// Validates `overrides` for the launch's world: the checks of `tessera train` on every rank. The
// machine that launches may have no GPU, so a GPU recipe is checked with its ranks on CPU (the
// layout, batch and data checks do not depend on the device).
Recipe validated(const LaunchCommandOptions& options, const std::vector<std::string>& overrides, int world,
                 int per_node) {
  Recipe recipe = Recipe::load(options.recipe, overrides);
  std::vector<std::string> on_cpu = overrides;
  on_cpu.push_back("train.device=cpu");
  LaunchContext launch{.rank = 0, .world_size = world, .local_rank = 0, .local_size = per_node};
  train_config_from_recipe(Recipe::load(options.recipe, on_cpu), launch);
  return recipe;
}

// The jobs of the launch, each validated; sweep jobs get their own run and checkpoint folders.
std::vector<Job> jobs_of(const LaunchCommandOptions& options, std::string& base_run_dir, bool& gpus) {
  const int world = options.nodes * options.gpus_per_node;
  const int per_node = options.local ? world : options.gpus_per_node;
  Recipe base = validated(options, options.overrides, world, per_node);
  base_run_dir = fs::absolute(base.get_string("logging.run_dir")).lexically_normal().string();
  gpus = base.get_string("train.device") != "cpu";
  if (options.sweep.empty()) return {{options.overrides, base_run_dir}};
  const std::string save = base.get_string("checkpoint.save");
  std::vector<Job> jobs;
  std::vector<std::vector<std::string>> lines = read_sweep(options.sweep);
  for (size_t i = 0; i < lines.size(); ++i) {
    Job job{options.overrides, ""};
    job.overrides.insert(job.overrides.end(), lines[i].begin(), lines[i].end());
    if (!sets_key(lines[i], "logging.run_dir"))
      job.overrides.push_back(fmt::format("logging.run_dir={}/sweep-{}", base_run_dir, i));
    if (!save.empty() && !sets_key(lines[i], "checkpoint.save"))
      job.overrides.push_back(fmt::format("checkpoint.save={}/sweep-{}", save, i));
    try {
      Recipe recipe = validated(options, job.overrides, world, per_node);
      job.run_dir = recipe.get_string("logging.run_dir");
      TS_CHECK((recipe.get_string("train.device") != "cpu") == gpus, "train.device differs from the other jobs'");
    } catch (const Error& e) {
      TS_CHECK(false, "--sweep ", options.sweep, " job ", i, " (line '", fmt::format("{}", fmt::join(lines[i], " ")),
               "'): ", e.what());
    }
    jobs.push_back(std::move(job));
  }
  return jobs;
}

fs::path executable() { return fs::read_symlink("/proc/self/exe"); }

// The template: --template, else slurm/tessera.sbatch.in in a folder above the executable (a build
// folder inside the source tree) or in PREFIX/share/tessera (an install).
fs::path template_path(const LaunchCommandOptions& options) {
  if (!options.template_path.empty()) {
    TS_CHECK(fs::exists(options.template_path), "--template ", options.template_path, " does not exist");
    return options.template_path;
  }
  fs::path exe = executable();
  for (fs::path dir = exe.parent_path(); !dir.empty(); dir = dir.parent_path()) {
    if (fs::exists(dir / kTemplate)) return dir / kTemplate;
    if (fs::exists(dir / "share/tessera" / kTemplate)) return dir / "share/tessera" / kTemplate;
    if (dir == dir.root_path()) break;
  }
  TS_CHECK(false, "cannot find ", kTemplate, " in a folder above ", exe.string(),
           " (nor in share/tessera/); pass --template PATH");
  return {};
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  TS_CHECK(in.good(), path.string(), " cannot be read");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Runs argv (found on PATH) with this process's streams; returns its exit status.
int spawn(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int error = posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), environ);
  TS_CHECK(error == 0, "cannot run ", argv[0], ": ", std::strerror(error), " (is it installed and on PATH?)");
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) TS_CHECK(errno == EINTR, "waitpid(", argv[0], ") failed");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::vector<std::string> mpirun_argv(const LaunchCommandOptions& options, const Job& job) {
  std::vector<std::string> argv = {
      "mpirun",          "-np",       std::to_string(options.nodes * options.gpus_per_node),
      "--oversubscribe", "--bind-to", "none",
      "--mca",           "btl",       "self,vader"};
  if (geteuid() == 0) argv.push_back("--allow-run-as-root");  // containers run as root
  argv.insert(argv.end(), {executable().string(), "train", options.recipe});
  argv.insert(argv.end(), job.overrides.begin(), job.overrides.end());
  argv.insert(argv.end(), {"--connect-timeout", fmt::format("{}", options.connect_timeout_seconds)});
  return argv;
}

int run_local(const LaunchCommandOptions& options, const std::vector<Job>& jobs) {
  // The sbatch script's thread count (the CPU kernels' summation order depends on it).
  if (!options.dry_run && !std::getenv("OMP_NUM_THREADS"))
    setenv("OMP_NUM_THREADS", std::to_string(std::max(options.cpus_per_task, 1)).c_str(), 1);
  int failed = 0;
  for (size_t i = 0; i < jobs.size(); ++i) {
    std::vector<std::string> argv = mpirun_argv(options, jobs[i]);
    std::string line;
    for (const std::string& a : argv) {
      if (!line.empty()) line += ' ';
      line += shell_quote(a);
    }
    if (options.dry_run) {
      fmt::print("{}\n", line);
      continue;
    }
    fmt::print("tessera launch: job {} of {}: {}\n", i + 1, jobs.size(), line);
    std::fflush(stdout);
    int status = spawn(argv);
    if (status != 0) {
      fmt::print(stderr, "tessera launch: job {} of {} (run dir {}) failed with status {}\n", i + 1, jobs.size(),
                 jobs[i].run_dir, status);
      failed = status;
    }
  }
  return failed;
}

// Submits the script and prints its job id (--parsable prints "ID" or "ID;cluster"); with
// `wait`, waits for the job to end. Returns sbatch's exit status (with --wait, the job's).
int submit(const fs::path& script, bool wait, const std::string& description) {
  std::string command = "sbatch --parsable " + std::string(wait ? "--wait " : "") + shell_quote(script.string());
  FILE* pipe = popen(command.c_str(), "r");
  TS_CHECK(pipe, "cannot run sbatch");
  // The id comes first (sbatch --wait prints it at submission), then the wait.
  char buffer[256] = {};
  std::string id = fgets(buffer, sizeof(buffer), pipe) ? buffer : "";
  id = id.substr(0, id.find_first_of(";\n"));
  if (!id.empty()) {
    fmt::print("tessera launch: submitted job {} ({}); logs in {}\n", id, description,
               (script.parent_path() / "job-").string() + id + "*.out");
    std::fflush(stdout);
  }
  while (fgets(buffer, sizeof(buffer), pipe)) {
  }
  int raw = pclose(pipe);
  int status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 1;
  TS_CHECK(!id.empty() || status == 0, "sbatch ", script.string(),
           " failed (its message is above; is Slurm installed?)");
  if (wait) fmt::print("tessera launch: job {} ended with status {}\n", id, status);
  return status;
}

}  // namespace

CLI::App* add_launch_subcommand(CLI::App& app, LaunchCommandOptions& options) {
  CLI::App* launch = app.add_subcommand("launch", "Run a recipe on N nodes x G GPUs: submit an sbatch job, or mpirun");
  launch->add_option("recipe", options.recipe, "recipe YAML (see recipes/)")->required();
  launch->add_option("overrides", options.overrides, "section.key=value overrides, e.g. train.train_iters=100");
  launch->add_option("--nodes", options.nodes, "nodes")->check(CLI::PositiveNumber);
  launch->add_option("--gpus-per-node", options.gpus_per_node, "ranks (GPUs) per node")->check(CLI::PositiveNumber);
  launch->add_option("--partition", options.partition, "Slurm partition (default: the cluster's)");
  launch->add_option("--account", options.account, "Slurm account (default: yours)");
  launch->add_option("--time", options.time, "time limit, e.g. 04:00:00 or 2-00:00:00 (default: the partition's)");
  launch->add_option("--job-name", options.job_name, "Slurm job name (default: tessera-RECIPE)");
  launch->add_option("--cpus-per-task", options.cpus_per_task, "CPUs per rank (OMP_NUM_THREADS)")
      ->check(CLI::PositiveNumber);
  launch->add_option("--signal-seconds", options.signal_seconds,
                     "seconds before the time limit at which the ranks save and the job requeues itself");
  launch
      ->add_option("--connect-timeout", options.connect_timeout_seconds,
                   "seconds a rank waits for the others at start before it ends the job naming its node")
      ->check(CLI::PositiveNumber);
  launch->add_option("--sweep", options.sweep, "file of override lines, one job each: submitted as a job array");
  launch->add_option("--template", options.template_path, "sbatch template (default: slurm/tessera.sbatch.in)");
  launch->add_flag("--dry-run", options.dry_run, "print the sbatch script (or the mpirun commands); submit nothing");
  launch->add_flag("--wait", options.wait, "wait for the Slurm job to end and return its exit status");
  launch->add_flag("--local", options.local, "run with mpirun on this machine instead of Slurm");
  return launch;
}

int run_launch_command(const LaunchCommandOptions& options) {
  std::string run_dir;
  bool gpus = true;
  std::vector<Job> jobs = jobs_of(options, run_dir, gpus);
  if (options.local) return run_local(options, jobs);

  fs::path template_file = template_path(options);
  SbatchJob job;
  const int world = options.nodes * options.gpus_per_node;
  job.description =
      fmt::format("{} on {} node(s) x {} rank(s) = {} ranks{}", options.recipe, options.nodes, options.gpus_per_node,
                  world, jobs.size() > 1 ? fmt::format(", a sweep of {} jobs", jobs.size()) : std::string());
  job.job_name = options.job_name.empty() ? "tessera-" + fs::path(options.recipe).stem().string() : options.job_name;
  job.nodes = options.nodes;
  job.tasks_per_node = options.gpus_per_node;
  job.request_gpus = gpus;
  job.partition = options.partition;
  job.account = options.account;
  job.time = options.time;
  job.cpus_per_task = options.cpus_per_task;
  job.signal_seconds = options.signal_seconds;
  job.connect_timeout_seconds = options.connect_timeout_seconds;
  job.work_dir = fs::current_path().string();
  job.log_dir = (fs::path(run_dir) / "slurm").string();
  job.tessera = executable().string();
  job.recipe = fs::absolute(options.recipe).lexically_normal().string();
  job.overrides = options.overrides;
  if (!options.sweep.empty())
    for (const Job& j : jobs) job.sweep.emplace_back(j.overrides.begin() + options.overrides.size(), j.overrides.end());
  std::string script = sbatch_script(job, read_text(template_file), template_file.string());
  if (options.dry_run) {
    fmt::print("{}", script);
    return 0;
  }
  fs::create_directories(job.log_dir);
  fs::path script_file = fs::path(job.log_dir) / "job.sbatch";
  std::ofstream(script_file) << script;
  return submit(script_file, options.wait, job.description);
}

}  // namespace tessera
