// Encode speed of Tessera's BPE tokenizer, in MB of text per second, for comparison with
// tiktoken (tests/reference/tiktoken_compare.py times tiktoken on the same files).
//   tokenizer_bench [--tokenizer PATH] [--threads 1,2,4,8] [--repeats 5] TEXT_FILE...
// For each text file, single-thread: "cold", the best of passes that each start from a freshly
// loaded tokenizer (empty word cache: every piece not in the vocabulary goes through the merge
// loop, like tiktoken, which has no cache), and "warm", the best of passes over the same text
// with the cache filled (the steady state of a long preprocessing run, where most pieces
// repeat). Then the aggregate MB/s of T threads sharing one warm tokenizer (each encodes 1/T of
// the text), which shows what the shared, sharded, mutex-guarded cache costs.
#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "data/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("tokenizer_bench: cannot read " + path);
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

double single_thread_pass(const tessera::Tokenizer& tokenizer, const std::string& text) {
  auto start = Clock::now();
  std::vector<int32_t> ids = tokenizer.encode(text);
  double seconds = seconds_since(start);
  if (ids.empty() && !text.empty()) throw std::runtime_error("tokenizer_bench: no ids");
  return static_cast<double>(text.size()) / 1e6 / seconds;
}

double threaded_pass(const tessera::Tokenizer& tokenizer, const std::string& text, size_t threads) {
  std::vector<std::thread> workers;
  auto start = Clock::now();
  for (size_t t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      size_t begin = text.size() * t / threads, end = text.size() * (t + 1) / threads;
      tokenizer.encode(std::string_view(text).substr(begin, end - begin));
    });
  }
  for (auto& worker : workers) worker.join();
  return static_cast<double>(text.size()) / 1e6 / seconds_since(start);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Encode speed of Tessera's BPE tokenizer (MB/s)"};
  std::string tokenizer_path = "tests/data/fixtures/gpt2";
  std::vector<size_t> thread_counts = {1, 2, 4, 8};
  int repeats = 5;
  std::vector<std::string> texts;
  app.add_option("--tokenizer", tokenizer_path, "tokenizer.json or a directory of GPT-2 files");
  app.add_option("--threads", thread_counts, "thread counts for the shared-tokenizer runs")
      ->delimiter(',')
      ->allow_extra_args(false);
  app.add_option("--repeats", repeats, "single-thread passes, cold and warm (the best is reported)");
  app.add_option("texts", texts, "UTF-8 text files to encode")->required();
  CLI11_PARSE(app, argc, argv);

  fmt::print("tokenizer: {}  (hardware threads: {})\n", tokenizer_path, std::thread::hardware_concurrency());
  fmt::print("{:<28} {:>8} {:>12} {:>12}", "text", "MB", "cold best", "warm best");
  for (size_t threads : thread_counts) fmt::print(" {:>10}", fmt::format("{} thr", threads));
  fmt::print("   (MB/s; thread columns: aggregate)\n");
  for (const std::string& path : texts) {
    std::string text = read_text(path);
    double cold = 0, warm = 0;
    for (int r = 0; r < repeats; ++r) {
      cold = std::max(cold, single_thread_pass(tessera::Tokenizer::load(tokenizer_path), text));
    }
    tessera::Tokenizer tokenizer = tessera::Tokenizer::load(tokenizer_path);
    for (int r = 0; r < repeats + 1; ++r) warm = std::max(warm, single_thread_pass(tokenizer, text));
    std::string name = std::filesystem::path(path).filename().string();
    fmt::print("{:<28} {:>8.2f} {:>12.1f} {:>12.1f}", name.substr(0, 28), static_cast<double>(text.size()) / 1e6, cold,
               warm);
    for (size_t threads : thread_counts) fmt::print(" {:>10.1f}", threaded_pass(tokenizer, text, threads));
    fmt::print("\n");
  }
  return 0;
}
