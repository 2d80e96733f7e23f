#include "launcher/export_progress.h"

#include <fmt/format.h>

namespace tessera {

ByteProgress::ByteProgress(std::string label, uint64_t total_bytes, std::FILE* out)
    : label_(std::move(label)), total_(total_bytes), out_(out), start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

void ByteProgress::update(uint64_t done_bytes) {
  done_ = done_bytes;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_print_ < std::chrono::milliseconds(500)) return;
  last_print_ = now;
  print(done_bytes, false);
}

double ByteProgress::finish() {
  print(done_, true);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ByteProgress::print(uint64_t done, bool final) {
  if (out_ == nullptr) return;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double mb = double(done) / 1e6, rate = seconds > 0 ? mb / seconds : 0.0;
  if (final) {
    fmt::print(out_, "\r{}: {:.1f} MB in {:.2f} s ({:.1f} MB/s)\n", label_, mb, seconds, rate);
  } else {
    fmt::print(out_, "\r{}: {:.1f} / {:.1f} MB ({:.1f} MB/s)", label_, mb, double(total_) / 1e6, rate);
  }
  std::fflush(out_);
}

}  // namespace tessera
