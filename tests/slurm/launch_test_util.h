// Helpers of the launch tests: a tiny Llama recipe over a random-token corpus (ranks on CPU, f32),
// mpirun and the tessera executable's command lines (shell runs and losses: support/cli_runs.h).
#pragma once

#include <unistd.h>

#include <climits>
#include <filesystem>
#include <string>

#include "data/data_test_util.h"
#include "support/cli_runs.h"

namespace tessera::launch_test {

using testing::Outcome;
using testing::read_losses;
using testing::read_text;
using testing::run;
using testing::write_random_corpus;

inline std::string recipe_text(const std::string& data_prefix, int steps, const std::string& device = "cpu") {
  return "model:\n  preset: llama-tiny\ndata:\n  data_path: [" + data_prefix +
         "]\n  split: \"90,10,0\"\n  seq_length: 16\n  num_workers: 1\n"
         "optimizer:\n  lr: 3.0e-3\n  min_lr: 3.0e-4\n  weight_decay: 0.1\n  clip_grad: 1.0\n"
         "scheduler:\n  lr_warmup_iters: 2\n"
         "train:\n  micro_batch_size: 1\n  global_batch_size: 8\n  train_iters: " +
         std::to_string(steps) + "\n  eval_interval: 1000\n  eval_iters: 1\n  precision: fp32\n  device: " + device +
         "\n  resume: none\nlogging:\n  log_interval: 1\n";
}

inline std::string mpirun(int ranks) {
  return std::string(TESSERA_MPIEXEC) +
         " --oversubscribe --allow-run-as-root --bind-to none --mca btl self,vader --mca mpi_yield_when_idle 1 -np " +
         std::to_string(ranks) + " ";
}

inline std::string tessera() { return TESSERA_EXECUTABLE; }

inline int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

inline std::string host_name() {
  char host[HOST_NAME_MAX + 1] = {};
  gethostname(host, HOST_NAME_MAX);
  return host;
}

}  // namespace tessera::launch_test
