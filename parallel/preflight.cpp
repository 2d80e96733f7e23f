// Pre-flight all_reduce over every process group (see preflight.h).
#include "parallel/preflight.h"

#include <chrono>
#include <iomanip>
#include <optional>
#include <sstream>

namespace tessera {

namespace {

constexpr int64_t kLatencyElements = 8;

// Rank r's element i. Small integers stay exact in f32 summed over thousands of ranks; the rank
// term catches data from the wrong rank, the position term data landing at the wrong place.
float contribution(int rank, int64_t i) { return static_cast<float>(rank % 8 + i % 5); }

Tensor contributions(const Communicator& comm, int64_t n) {
  std::vector<float> values(n);
  for (int64_t i = 0; i < n; ++i) values[i] = contribution(comm.rank(), i);
  return Tensor::from_vector(values, {n}, comm.device());
}

// The first element of `reduced` that differs from the sum over ranks, described.
std::optional<std::string> first_mismatch(const Communicator& comm, const Tensor& reduced, const char* what) {
  std::vector<float> got = reduced.to_vector<float>();
  double rank_sum = 0;
  for (int r = 0; r < comm.size(); ++r) rank_sum += r % 8;
  for (size_t i = 0; i < got.size(); ++i) {
    double expected = rank_sum + static_cast<double>(comm.size()) * static_cast<double>(i % 5);
    if (got[i] != expected) {
      return detail::concat("preflight: ", what, " all_reduce on group '", comm.name(), "' (rank ", comm.rank(), " of ",
                            comm.size(), ") returned ", got[i], " at element ", i, " of ", got.size(), ", expected ",
                            expected,
                            "; the ranks' data did not add up: check the interconnect (NCCL_DEBUG=INFO) and "
                            "that every rank runs the same build");
    }
  }
  return std::nullopt;
}

// Sums the contributions once (checked), then times `iterations` more all_reduces (max of
// identical values: the result stays checkable) and checks again. Returns seconds per op.
double checked_timed_all_reduce(Communicator& comm, int64_t n, int iterations, const char* what,
                                std::optional<std::string>& mismatch) {
  Tensor tensor = contributions(comm, n);
  comm.all_reduce(tensor, ReduceOp::Sum);
  mismatch = first_mismatch(comm, tensor, what);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < iterations; ++i) comm.all_reduce(tensor, ReduceOp::Max);
  tensor.narrow(0, 0, 1).item();  // waits for a stream-ordered backend
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!mismatch) mismatch = first_mismatch(comm, tensor, what);
  return seconds / iterations;
}

std::string bytes_text(int64_t bytes) {
  std::ostringstream out;
  if (bytes < 1024) {
    out << bytes << " B";
  } else if (bytes < (int64_t{1} << 20)) {
    out << std::setprecision(3) << bytes / 1024.0 << " KiB";
  } else {
    out << std::setprecision(3) << bytes / 1048576.0 << " MiB";
  }
  return out.str();
}

PreflightResult check_group(Communicator& comm, const PreflightLog& log, const PreflightOptions& options) {
  PreflightResult result;
  result.group = comm.name();
  result.size = comm.size();
  if (comm.size() == 1) {
    result.skipped = true;
    if (log) log(detail::concat("preflight: group '", comm.name(), "' (1 rank): skipped"));
    return result;
  }
  // Every rank runs every collective, whatever it found, so that none is left waiting.
  std::optional<std::string> mismatch, large_mismatch;
  double latency = checked_timed_all_reduce(comm, kLatencyElements, options.latency_iterations, "small", mismatch);
  int64_t n = options.bandwidth_bytes / 4;
  double bandwidth = checked_timed_all_reduce(comm, n, options.bandwidth_iterations, "large", large_mismatch);
  if (!mismatch) mismatch = large_mismatch;
  // One exchange tells every rank who (if anyone) saw a wrong result and the slowest times.
  Tensor summary = Tensor::from_vector(std::vector<double>{mismatch ? comm.rank() + 1.0 : 0.0, latency, bandwidth}, {3},
                                       comm.device());
  comm.all_reduce(summary, ReduceOp::Max);
  std::vector<double> slowest = summary.to_vector<double>();
  TS_CHECK(!mismatch, *mismatch);
  TS_CHECK(slowest[0] == 0, "preflight: rank ", static_cast<int>(slowest[0]) - 1, " of group '", comm.name(),
           "' got a wrong all_reduce result (its error names the element); check the interconnect (NCCL_DEBUG=INFO)");
  result.latency_s = slowest[1];
  result.latency_bytes = kLatencyElements * 4;
  result.bandwidth_s = slowest[2];
  result.bandwidth_bytes = n * 4;
  double factor = 2.0 * (comm.size() - 1) / comm.size();
  result.bus_bandwidth_gbs = static_cast<double>(result.bandwidth_bytes) * factor / result.bandwidth_s / 1e9;
  if (log) {
    std::ostringstream line;
    line << "preflight: group '" << comm.name() << "' (" << comm.size() << " ranks): ok, latency " << std::fixed
         << std::setprecision(1) << result.latency_s * 1e6 << " us (" << bytes_text(result.latency_bytes)
         << "), bus bandwidth " << std::setprecision(2) << result.bus_bandwidth_gbs << " GB/s ("
         << bytes_text(result.bandwidth_bytes) << ")";
    log(line.str());
  }
  return result;
}

}  // namespace

std::vector<PreflightResult> preflight_check(const std::vector<Communicator*>& groups, const PreflightLog& log,
                                             const PreflightOptions& options) {
  TS_CHECK(options.bandwidth_bytes >= 4 && options.latency_iterations >= 1 && options.bandwidth_iterations >= 1,
           "preflight: bandwidth_bytes (", options.bandwidth_bytes, ") must be >= 4 and the iteration counts (",
           options.latency_iterations, ", ", options.bandwidth_iterations, ") >= 1");
  std::vector<PreflightResult> results;
  for (Communicator* comm : groups) {
    TS_CHECK(comm != nullptr, "preflight: a group is null");
    results.push_back(check_group(*comm, log, options));
  }
  return results;
}

std::vector<PreflightResult> preflight_check(Communicator& world, const ProcessGroups& groups, const PreflightLog& log,
                                             const PreflightOptions& options) {
  return preflight_check({&world, &groups.tp(), &groups.cp(), &groups.dp(), &groups.pp()}, log, options);
}

}  // namespace tessera
