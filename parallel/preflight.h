// Pre-flight check: before training starts, every process group of more than one rank runs a
// small all_reduce (latency) and a few-MiB one (bus bandwidth), checks both results against
// their closed form, and reports one line per group, so a broken link or a misconfigured
// fabric fails in seconds instead of at step 1000.
//   preflight: group 'dp' (4 ranks): ok, latency 41.3 us (32 B), bus bandwidth 6.12 GB/s (4 MiB)
// Times are the slowest rank's (max-reduced over the group), so every rank logs the same line.
// Bus bandwidth is NCCL-tests' all_reduce figure: bytes * 2 (n - 1) / n / time.
// A wrong result throws tessera::Error on every rank of the group, naming the group, the rank
// that saw it, the element and the expected value. A link that hangs is the watchdog's to catch:
// run the check under a short watchdog timeout (Watchdog::set_timeout).
// Collective: every rank passes its groups in the same role order; works on any Communicator
// (tensors live on comm.device()).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/process_groups.h"

namespace tessera {

struct PreflightOptions {
  int64_t bandwidth_bytes = int64_t{4} << 20;  // f32 payload of the bandwidth all_reduce
  int latency_iterations = 10;
  int bandwidth_iterations = 3;
};

struct PreflightResult {
  std::string group;
  int size = 1;
  bool skipped = false;  // a group of one rank: nothing to check
  double latency_s = 0;  // per small all_reduce
  int64_t latency_bytes = 0;
  double bandwidth_s = 0;  // per large all_reduce
  int64_t bandwidth_bytes = 0;
  double bus_bandwidth_gbs = 0;  // GB/s (1e9 bytes)
};

using PreflightLog = std::function<void(const std::string& line)>;

// Checks each group in order (groups of one rank are reported as skipped).
std::vector<PreflightResult> preflight_check(const std::vector<Communicator*>& groups, const PreflightLog& log,
                                             const PreflightOptions& options = {});
// world, then tp, cp, dp, pp.
std::vector<PreflightResult> preflight_check(Communicator& world, const ProcessGroups& groups, const PreflightLog& log,
                                             const PreflightOptions& options = {});

}  // namespace tessera
