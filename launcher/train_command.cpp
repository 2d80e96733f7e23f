#include "launcher/train_command.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <optional>

#include "core/cuda/runtime.h"
#include "launcher/command_failure.h"
#include "launcher/recipe.h"
#include "launcher/train_config.h"
#include "launcher/trainer.h"
#include "launcher/world_agreement.h"
#include "launcher/world_communicator.h"
#include "parallel/flight_recorder.h"
#include "parallel/monitored_communicator.h"
#include "parallel/mpi_communicator.h"
#include "parallel/preflight.h"
#include "parallel/watchdog.h"

namespace tessera {

namespace {

// Runs `check` on every rank, then agrees over `world`: when any rank failed, the lowest one
// prints its error and every rank gets false.
bool agreed(Communicator& world, const std::function<void()>& check) {
  std::string error;
  try {
    check();
  } catch (const std::exception& e) {
    error = e.what();
  }
  Tensor failed = Tensor::zeros({world.size()}, DType::I32);
  failed.data<int32_t>()[world.rank()] = error.empty() ? 0 : 1;
  world.all_reduce(failed, ReduceOp::Sum);
  std::vector<int32_t> flags = failed.to_vector<int32_t>();
  int first = int(std::find(flags.begin(), flags.end(), 1) - flags.begin());
  if (first == world.rank()) {
    fmt::print(stderr, "tessera: error{}: {}\n", world.size() > 1 ? fmt::format(" (rank {})", first) : "", error);
  }
  return first == world.size();
}

// A multi-rank run: every collective goes through the flight recorder, a watchdog turns a
// hang (or an error on one rank) into dumps of every rank's recorder and the end of the job,
// and a pre-flight all_reduce over every group checks the links before the first step.
void train_ranks(const TrainConfig& config, const LaunchContext& launch, Communicator& host_world,
                 const Trainer::Log& log) {
  auto recorder = std::make_shared<FlightRecorder>(launch.rank, launch.world_size);
  MonitoredCommunicator world(make_world_communicator(host_world, config.device), recorder);
  WatchdogOptions watch;
  watch.timeout = std::chrono::milliseconds(static_cast<int64_t>(config.distributed_timeout_minutes * 60'000.0));
  watch.dump_dir = std::filesystem::path(config.run_dir) / "flight_recorder";
  // Slurm's time limit before training starts; during training the trainer's preemption handler
  // (launcher/checkpoint_preemption.h) takes SIGTERM and saves a checkpoint instead of dumping.
  watch.dump_on_sigterm = true;
  watch.abort = abort_mpi_job;
  Watchdog watchdog(recorder, watch);
  // Declared outside the try block: the groups' communicators must still exist when the handler
  // runs. Destroyed by the unwinding, a NCCL communicator would wait for peers that are still
  // inside a collective with this rank, and the error below would never be printed.
  std::optional<ProcessGroups> groups;
  try {
    groups.emplace(world, config.layout);
    // A link that hangs fails in a minute here, not after the full timeout at step 1.
    watchdog.set_timeout(std::min(watch.timeout, std::chrono::milliseconds(60'000)));
    preflight_check(world, *groups, [&](const std::string& line) {
      if (launch.rank == 0) log(line);
    });
    watchdog.set_timeout(watch.timeout);
    Trainer(config, log, &*groups).run();
  } catch (const std::exception& e) {
    // The other ranks may be waiting for this one in a collective: dump every rank, end the job.
    fmt::print(stderr, "tessera: error (rank {} of {}): {}\n", launch.rank, launch.world_size, e.what());
    std::fflush(stderr);
    watchdog.abort_job(fmt::format("rank {}: {}", launch.rank, e.what()));
  }
}

void train(const TrainCommandOptions& options, const TrainConfig& config, const LaunchContext& launch,
           Communicator& host_world) {
  const bool logs = launch.rank == 0;
  if (logs) fmt::print("resolved configuration ({}):\n{}", options.recipe, config.resolved_yaml);
  Trainer::Log log = [](const std::string& line) {
    fmt::print("{}\n", line);
    std::fflush(stdout);
  };
  // Every later CUDA call of this rank, cuDNN's and NCCL's included, goes to its own GPU.
  if (config.device.is_cuda()) make_cuda_device_current(config.device.index);
  if (launch.world_size == 1) {
    Trainer(config, log).run();
    return;
  }
  train_ranks(config, launch, host_world, log);
}

// The world agreement (launcher/world_agreement.h), the first collective after MPI_Init: nullopt
// (after the lowest disagreeing rank printed why) when the ranks disagree. A rank that cannot
// reach the others prints its node and exits here: the launcher (srun --kill-on-bad-exit,
// mpirun) ends the job.
std::optional<WorldAgreement> world_agreement(const TrainCommandOptions& options) {
  std::optional<std::string> resolved;
  try {
    resolved = Recipe::load(options.recipe, options.overrides).resolved_yaml();
  } catch (const std::exception&) {
    // Reported by every rank's own validation next, if the ranks otherwise agree.
  }
  RankIdentity self = this_rank_identity(resolved);
  WorldAgreement agreement;
  try {
    check_slurm_step(self);
    if (self.world_size == 1) return agreement;
    auto timeout = std::chrono::milliseconds(static_cast<int64_t>(options.connect_timeout_seconds * 1000.0));
    agreement = agree_on_world(self, timeout);
  } catch (const std::exception& e) {
    fmt::print(stderr, "tessera: error: {}\n", e.what());
    std::fflush(stderr);
    if (self.world_size > 1) std::_Exit(1);  // the exchange may still be posted: do not finalize MPI
    return std::nullopt;
  }
  if (agreement.disagreement.empty()) return agreement;
  if (self.rank == 0) fmt::print(stderr, "tessera: error: {}\n", agreement.disagreement);
  return std::nullopt;
}

}  // namespace

CLI::App* add_train_subcommand(CLI::App& app, TrainCommandOptions& options) {
  CLI::App* train = app.add_subcommand("train", "Pretrain a GPT or Llama model from a recipe YAML");
  train->add_option("recipe", options.recipe, "recipe YAML (see recipes/)")->required();
  train->add_option("overrides", options.overrides, "section.key=value overrides, e.g. train.train_iters=100");
  train
      ->add_option("--connect-timeout", options.connect_timeout_seconds,
                   "seconds a rank waits for the others at start before it ends the job naming its node")
      ->check(CLI::PositiveNumber);
  return train;
}

int run_train_command(const TrainCommandOptions& options, const MpiRuntime& runtime) {
  std::optional<WorldAgreement> world = world_agreement(options);
  if (!world) return 1;
  LaunchContext launch = launch_context(runtime);
  MpiCommunicator host_world(MPI_COMM_WORLD, "world");
  std::optional<TrainConfig> config;
  bool valid = agreed(host_world, [&] {
    // MPI's node (shared memory) must be the node the ranks named: it picks the GPU.
    TS_CHECK(
        launch.world_size == 1 || (launch.local_rank == world->local_rank && launch.local_size == world->local_size),
        "MPI places rank ", launch.rank, " as local rank ", launch.local_rank, " of ", launch.local_size,
        " but its host name makes it local rank ", world->local_rank, " of ", world->local_size,
        ": two nodes share a host name, or one node has two; give every node its own name");
    config = train_config_from_recipe(Recipe::load(options.recipe, options.overrides), launch);
    check_world_backend(config->device, launch.world_size);
  });
  if (!valid) return 1;
  try {
    train(options, *config, launch, host_world);
  } catch (const std::exception& e) {
    return fail_command(launch, e);  // before the watchdog exists (the backend's setup)
  }
  return 0;
}

}  // namespace tessera
