// A progress line for export and import: bytes done of the total and the rate in MB/s,
// rewritten in place on a terminal at most every half second, and a final summary line.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace tessera {

class ByteProgress {
 public:
  // `out` null: silent (tests).
  ByteProgress(std::string label, uint64_t total_bytes, std::FILE* out = stderr);
  void update(uint64_t done_bytes);
  // Prints "<label>: X MB in S s (R MB/s)"; returns the seconds since construction.
  double finish();

 private:
  void print(uint64_t done, bool final);

  std::string label_;
  uint64_t total_;
  std::FILE* out_;
  std::chrono::steady_clock::time_point start_, last_print_;
  uint64_t done_ = 0;
};

}  // namespace tessera
