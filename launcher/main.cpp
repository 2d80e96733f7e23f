// The `tessera` command line. Subcommands:
//   tessera info        build configuration and visible GPUs
//   tessera toy-train   train an MLP on the two-spirals task on CPU (end-to-end smoke run)
//   tessera preprocess  tokenize text/JSONL into a Megatron .bin/.idx indexed dataset
//   tessera sft-dump    show packed SFT rows of chat JSONL with the loss mask visible
//   tessera train       pretrain a model from a recipe YAML (one process, or every rank of
//                       mpirun / srun; MPI is initialised for this subcommand only)
//   tessera generate    sample text from a checkpoint (KV cache, temperature/top-k/top-p)
//   tessera export      write a checkpoint as a Hugging Face folder or a llama.cpp GGUF file
//   tessera import      turn a Hugging Face GPT-2 / Llama folder into a checkpoint
//   tessera logits      a checkpoint's logits for token rows (.npy -> safetensors), for checks
//   tessera launch      run a recipe on N nodes x G GPUs: write and submit an sbatch job (or
//                       print it with --dry-run), or run it with mpirun here (--local)
//   tessera autoconfig  search the parallel layouts for a model and GPU count, write the best recipe
//   tessera dpo         align a model on preference pairs with DPO / IPO (every rank of mpirun: data parallel)
//   tessera reward-model  train a reward model (scalar head, Bradley-Terry) on preference pairs
//   tessera grpo        GRPO from an SFT checkpoint with a programmatic reward (every rank of mpirun: data parallel)
//   tessera ppo         PPO (RLHF): actor, critic, reference, reward model or programmatic reward (mpirun: data parallel)
//   tessera doctor      diagnose a run: `doctor hang RUN_DIR` names the rank and collective that
//                       diverged, from the flight-recorder dumps of a hung multi-rank run
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "core/check.h"
#include "core/cuda/runtime.h"
#include "launcher/autoconfig_command.h"
#include "launcher/doctor_command.h"
#include "launcher/export_command.h"
#include "launcher/generate_command.h"
#include "launcher/grpo_command.h"
#include "launcher/import_command.h"
#include "launcher/launch_command.h"
#include "launcher/logits_command.h"
#include "launcher/ppo_command.h"
#include "launcher/preference_command.h"
#include "launcher/preprocess_command.h"
#include "launcher/sft_dump_command.h"
#include "launcher/toy_train.h"
#include "launcher/train_command.h"
#include "parallel/mpi_runtime.h"

namespace {

int run_info() {
#ifdef TESSERA_WITH_CUDA
  const char* cuda = "yes";
#else
  const char* cuda = "no";
#endif
  int gpus = tessera::cuda_device_count();
  fmt::print("tessera: CUDA backend built: {}; visible GPUs: {}\n", cuda, gpus);
  for (int i = 0; i < gpus; ++i) fmt::print("  cuda:{}  {}\n", i, tessera::cuda_device_description(i));
  return 0;
}

int run_toy_train(const tessera::ToyTrainOptions& options) {
  fmt::print("tessera toy-train: MLP 2-{}-{}-{} on two spirals ({} points), SGD lr {} momentum {}\n", options.hidden,
             options.hidden, options.classes, options.points_per_class * options.classes, options.lr, options.momentum);
  tessera::ToyTrainResult result = tessera::run_toy_training(options, [](const std::string& line) {
    fmt::print("{}\n", line);
    std::fflush(stdout);
  });
  fmt::print("done in {:.1f}s: final loss {:.4f}, train accuracy {:.1f}%\n", result.seconds, result.final_loss,
             100.0 * result.accuracy);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Tessera: Megatron-style distributed LLM training"};
  app.require_subcommand(1);
  CLI::App* info = app.add_subcommand("info", "Show the build configuration and visible GPUs");
  tessera::ToyTrainOptions toy;
  CLI::App* toy_train = app.add_subcommand("toy-train", "Train an MLP on the two-spirals task (CPU smoke run)");
  toy_train->add_option("--steps", toy.steps, "optimizer steps")->check(CLI::PositiveNumber);
  toy_train->add_option("--hidden", toy.hidden, "hidden width")->check(CLI::PositiveNumber);
  toy_train->add_option("--lr", toy.lr, "learning rate")->check(CLI::PositiveNumber);
  toy_train->add_option("--seed", toy.seed, "random seed");
  tessera::PreprocessCommandOptions preprocess_options;
  CLI::App* preprocess = tessera::add_preprocess_subcommand(app, preprocess_options);
  tessera::SftDumpCommandOptions sft_dump_options;
  CLI::App* sft_dump = tessera::add_sft_dump_subcommand(app, sft_dump_options);
  tessera::TrainCommandOptions train_options;
  CLI::App* train = tessera::add_train_subcommand(app, train_options);
  tessera::GenerateCommandOptions generate_options;
  CLI::App* generate = tessera::add_generate_subcommand(app, generate_options);
  tessera::ExportCommandOptions export_options;
  CLI::App* export_command = tessera::add_export_subcommand(app, export_options);
  tessera::ImportCommandOptions import_options;
  CLI::App* import_command = tessera::add_import_subcommand(app, import_options);
  tessera::LogitsCommandOptions logits_options;
  CLI::App* logits = tessera::add_logits_subcommand(app, logits_options);
  tessera::DoctorOptions doctor_options;
  CLI::App* doctor = tessera::add_doctor_subcommand(app, doctor_options);
  tessera::AutoconfigCommandOptions autoconfig_options;
  CLI::App* autoconfig = tessera::add_autoconfig_subcommand(app, autoconfig_options);
  tessera::LaunchCommandOptions launch_options;
  CLI::App* launch = tessera::add_launch_subcommand(app, launch_options);
  tessera::PreferenceCommandOptions dpo_options, reward_model_options;
  CLI::App* dpo = tessera::add_dpo_subcommand(app, dpo_options);
  CLI::App* reward_model = tessera::add_reward_model_subcommand(app, reward_model_options);
  tessera::GrpoCommandOptions grpo_options;
  CLI::App* grpo = tessera::add_grpo_subcommand(app, grpo_options);
  tessera::PpoCommandOptions ppo_options;
  CLI::App* ppo = tessera::add_ppo_subcommand(app, ppo_options);
  CLI11_PARSE(app, argc, argv);
  try {
    if (*info) return run_info();
    if (*toy_train) return run_toy_train(toy);
    if (*preprocess) return tessera::run_preprocess_command(preprocess_options);
    if (*sft_dump) return tessera::run_sft_dump_command(sft_dump_options);
    if (*train) {
      tessera::MpiRuntime runtime(&argc, &argv);  // a process started without mpirun is a singleton world
      return tessera::run_train_command(train_options, runtime);
    }
    if (*dpo || *reward_model) {
      tessera::MpiRuntime runtime(&argc, &argv);
      return *dpo ? tessera::run_preference_command(tessera::PreferenceMethod::kDpo, dpo_options, runtime)
                  : tessera::run_preference_command(tessera::PreferenceMethod::kRewardModel, reward_model_options,
                                                    runtime);
    }
    if (*grpo) {
      tessera::MpiRuntime runtime(&argc, &argv);
      return tessera::run_grpo_command(grpo_options, runtime);
    }
    if (*ppo) {
      tessera::MpiRuntime runtime(&argc, &argv);
      return tessera::run_ppo_command(ppo_options, runtime);
    }
    if (*generate) return tessera::run_generate_command(generate_options);
    if (*export_command) return tessera::run_export_command(export_options);
    if (*import_command) return tessera::run_import_command(import_options);
    if (*logits) return tessera::run_logits_command(logits_options);
    if (*doctor) return tessera::run_doctor_command(doctor_options);
    if (*autoconfig) return tessera::run_autoconfig_command(autoconfig_options);
    if (*launch) return tessera::run_launch_command(launch_options);
  } catch (const tessera::Error& e) {
    fmt::print(stderr, "tessera: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
