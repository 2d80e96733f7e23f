// Helpers of the tests that drive the real `tessera` executable (under mpirun, srun or alone):
// a random-token corpus, shell commands with their output captured, and the training losses a
// run directory's metrics.jsonl holds.
#pragma once

#include <sys/wait.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "data/indexed_dataset_writer.h"

namespace tessera::testing {

// 300 documents of 8..40 random token ids below llama-tiny's vocabulary of 512.
inline void write_random_corpus(const std::string& prefix) {
  IndexedDatasetWriter writer(prefix, IndexedDType::UInt16);
  std::mt19937 engine(7);
  for (int document = 0; document < 300; ++document) {
    std::vector<int32_t> tokens(8 + engine() % 33);
    for (int32_t& token : tokens) token = static_cast<int32_t>(engine() % 512);
    writer.add_document(tokens);
  }
  writer.finalize();
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

// Runs a shell command with stdout and stderr captured in `folder`/name.stdout and .stderr.
inline Outcome run(const std::string& command, const std::string& folder, const std::string& name) {
  std::string out = folder + "/" + name + ".stdout", err = folder + "/" + name + ".stderr";
  int raw = std::system((command + " >" + out + " 2>" + err).c_str());
  return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, read_text(out), read_text(err)};
}

// Training steps' losses by step, from a run directory's metrics.jsonl (validation records skipped).
inline std::map<int64_t, double> read_losses(const std::string& run_dir) {
  std::map<int64_t, double> losses;
  std::ifstream in(std::filesystem::path(run_dir) / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    nlohmann::json record = nlohmann::json::parse(line);
    if (record.contains("loss")) losses[record.at("step").get<int64_t>()] = record.at("loss").get<double>();
  }
  return losses;
}

}  // namespace tessera::testing
