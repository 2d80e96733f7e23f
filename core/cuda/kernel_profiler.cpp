// CUPTI activity profiler (see kernel_profiler.h). CUPTI hands over filled activity buffers
// on its own thread; records are aggregated under a mutex, and the summary is written by a
// static object's destructor after a final flush.
#include "core/cuda/kernel_profiler.h"

#include <cupti.h>
#include <cxxabi.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/check.h"

namespace tessera {

namespace {

constexpr size_t kBufferBytes = size_t(8) << 20;

struct KernelStats {
  int64_t calls = 0;
  uint64_t total_ns = 0;
};

std::string demangled(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(name, nullptr, nullptr, &status), std::free);
  std::string text = status == 0 && out ? out.get() : name;
  // Template arguments make names unreadable in a table; keep the function and its first few.
  return text.size() > 110 ? text.substr(0, 107) + "..." : text;
}

class Profiler {
 public:
  Profiler(std::string path, double skip_seconds) : path_(std::move(path)), skip_ns_(uint64_t(skip_seconds * 1e9)) {}

  void add(const std::string& name, uint64_t start, uint64_t end) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (first_ == 0) first_ = start;
    if (start < first_ + skip_ns_) return;
    KernelStats& s = stats_[name];
    ++s.calls;
    s.total_ns += end - start;
    intervals_.emplace_back(start, end);
  }

  void write() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::FILE* out = std::fopen(path_.c_str(), "w");
    if (!out) {
      std::fprintf(stderr, "TESSERA_CUDA_PROFILE: cannot write %s\n", path_.c_str());
      return;
    }
    std::sort(intervals_.begin(), intervals_.end());
    uint64_t busy = 0, begin = intervals_.empty() ? 0 : intervals_.front().first, end = begin, covered = begin;
    for (auto [s, e] : intervals_) {
      end = std::max(end, e);
      if (e > covered) busy += e - std::max(s, covered), covered = e;
    }
    const double span_ms = double(end - begin) / 1e6, busy_ms = double(busy) / 1e6;
    std::fprintf(out, "# TESSERA_CUDA_PROFILE: %zu activities over %.3f ms; GPU busy %.3f ms (%.1f%%), idle %.1f%%\n",
                 intervals_.size(), span_ms, busy_ms, span_ms > 0 ? 100.0 * busy_ms / span_ms : 0.0,
                 span_ms > 0 ? 100.0 - 100.0 * busy_ms / span_ms : 0.0);
    std::vector<std::pair<std::string, KernelStats>> rows(stats_.begin(), stats_.end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.total_ns > b.second.total_ns; });
    std::fprintf(out, "%10s %8s %10s %7s  %s\n", "total ms", "calls", "mean us", "busy%", "name");
    for (const auto& [name, s] : rows) {
      std::fprintf(out, "%10.3f %8lld %10.2f %6.2f%%  %s\n", double(s.total_ns) / 1e6, static_cast<long long>(s.calls),
                   double(s.total_ns) / 1e3 / double(s.calls), busy ? 100.0 * double(s.total_ns) / double(busy) : 0.0,
                   name.c_str());
    }
    std::fclose(out);
  }

 private:
  std::string path_;
  uint64_t skip_ns_;
  std::mutex mutex_;
  uint64_t first_ = 0;
  std::map<std::string, KernelStats> stats_;
  std::vector<std::pair<uint64_t, uint64_t>> intervals_;
};

Profiler* profiler = nullptr;

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = kBufferBytes;
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* record = nullptr;
  while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
    if (record->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || record->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
      auto* k = reinterpret_cast<CUpti_ActivityKernel10*>(record);
      profiler->add(demangled(k->name), k->start, k->end);
    } else if (record->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
      auto* m = reinterpret_cast<CUpti_ActivityMemcpy6*>(record);
      profiler->add("[memcpy kind " + std::to_string(m->copyKind) + "]", m->start, m->end);
    } else if (record->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
      auto* m = reinterpret_cast<CUpti_ActivityMemset4*>(record);
      profiler->add("[memset]", m->start, m->end);
    }
  }
  std::free(buffer);
}

void check_cupti(CUptiResult result, const char* call) {
  if (result == CUPTI_SUCCESS) return;
  const char* text = nullptr;
  cuptiGetResultString(result, &text);
  TS_CHECK(false, "TESSERA_CUDA_PROFILE: ", call, " failed: ", text ? text : "unknown CUPTI error");
}

// Flushes CUPTI and writes the summary when the process exits.
struct WriteAtExit {
  ~WriteAtExit() {
    if (!profiler) return;
    cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    profiler->write();
  }
};

}  // namespace

void start_kernel_profiler_from_environment() {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* path = std::getenv("TESSERA_CUDA_PROFILE");
    if (!path || !*path) return;
    const char* skip = std::getenv("TESSERA_CUDA_PROFILE_SKIP");
    profiler = new Profiler(path, skip ? std::atof(skip) : 0.0);
    static WriteAtExit write_at_exit;
    check_cupti(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed), "cuptiActivityRegisterCallbacks");
    check_cupti(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL), "cuptiActivityEnable(kernel)");
    check_cupti(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY), "cuptiActivityEnable(memcpy)");
    check_cupti(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET), "cuptiActivityEnable(memset)");
  });
}

}  // namespace tessera
