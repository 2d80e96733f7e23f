// Helpers of the launch tests: a tiny Llama recipe over a random-token corpus (ranks on CPU, f32),
// running shell commands with their output captured, and reading a run's metrics.jsonl.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "data/data_test_util.h"
#include "data/indexed_dataset_writer.h"

namespace tessera::launch_test {

// 300 documents of 8..40 random token ids below llama-tiny's vocabulary of 512.
inline void write_corpus(const std::string& prefix) {
  IndexedDatasetWriter writer(prefix, IndexedDType::UInt16);
  std::mt19937 engine(7);
  for (int document = 0; document < 300; ++document) {
    std::vector<int32_t> tokens(8 + engine() % 33);
    for (int32_t& token : tokens) token = static_cast<int32_t>(engine() % 512);
    writer.add_document(tokens);
  }
  writer.finalize();
}

inline std::string recipe_text(const std::string& data_prefix, int steps, const std::string& device = "cpu") {
  return "model:\n  preset: llama-tiny\ndata:\n  data_path: [" + data_prefix +
         "]\n  split: \"90,10,0\"\n  seq_length: 16\n  num_workers: 1\n"
         "optimizer:\n  lr: 3.0e-3\n  min_lr: 3.0e-4\n  weight_decay: 0.1\n  clip_grad: 1.0\n"
         "scheduler:\n  lr_warmup_iters: 2\n"
         "train:\n  micro_batch_size: 1\n  global_batch_size: 8\n  train_iters: " +
         std::to_string(steps) + "\n  eval_interval: 1000\n  eval_iters: 1\n  precision: fp32\n  device: " + device +
         "\n  resume: none\nlogging:\n  log_interval: 1\n";
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

struct Outcome {
  int status = -1;
  std::string out, err;
};

// Runs a shell command with stdout and stderr captured in files of `folder`.
inline Outcome run(const std::string& command, const std::string& folder, const std::string& name) {
  std::string out = folder + "/" + name + ".stdout", err = folder + "/" + name + ".stderr";
  int raw = std::system((command + " >" + out + " 2>" + err).c_str());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, read_text(out), read_text(err)};
}

inline std::string mpirun(int ranks) {
  return std::string(TESSERA_MPIEXEC) +
         " --oversubscribe --allow-run-as-root --bind-to none --mca btl self,vader --mca mpi_yield_when_idle 1 -np " +
         std::to_string(ranks) + " ";
}

inline std::string tessera() { return TESSERA_EXECUTABLE; }

// step -> loss of the run directory's metrics.jsonl (validation records skipped).
inline std::map<int64_t, double> losses(const std::string& run_dir) {
  std::map<int64_t, double> losses;
  std::ifstream in(std::filesystem::path(run_dir) / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    nlohmann::json record = nlohmann::json::parse(line);
    if (record.contains("loss")) losses[record.at("step").get<int64_t>()] = record.at("loss").get<double>();
  }
  return losses;
}

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
