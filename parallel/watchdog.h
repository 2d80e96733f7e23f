// Watchdog: a background thread that turns a hang into a diagnosis and an exit.
//
// Every poll_interval it asks the device which enqueued operations have finished
// (FlightRecorder::poll_device_completions), then looks at the oldest operation in flight. When one has
// been in flight longer than the timeout, it logs one line naming the operation, its sequence
// number, its group (name, group rank, members), this rank and the time waited, then aborts the
// job through abort_job():
//   1. dump this rank's recorder to dump_dir/rank_<N>.json;
//   2. ask every other rank to dump, by writing dump_dir/dump_request (each rank's watchdog
//      checks that file every request_poll_interval; with RUN_DIR on a shared filesystem this
//      reaches every node, without needing the communicator that is hung);
//   3. wait until every rank's dump exists or dump_grace has passed;
//   4. call the abort callback (abort_mpi_job for MPI; a NCCL job aborts its communicators first).
// abort_job() is also what a top-level error handler calls: a rank that fails alone would
// otherwise leave the others hanging, with no dumps.
//
// Dumps on demand: SIGUSR1 (`kill -USR1`, `scancel --signal=USR1`, mpirun forwards it) makes
// every signalled rank dump and carry on. With dump_on_sigterm, SIGTERM (Slurm's time limit)
// dumps and then terminates as it would have (or runs the handler installed before). The
// signal handlers only set a flag; the watchdog thread does the work. One watchdog at a time
// may own the signals.
//
// At start each rank removes its own stale dump, so a dump in the folder is from this run.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "parallel/flight_recorder.h"

namespace tessera {

struct WatchdogOptions {
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};
  std::chrono::milliseconds poll_interval{100};
  // RUN_DIR/flight_recorder by convention; empty: never dump (log and abort only).
  std::filesystem::path dump_dir;
  std::chrono::milliseconds request_poll_interval{1000};
  std::chrono::milliseconds dump_grace{10000};
  bool dump_on_sigusr1 = true;
  bool dump_on_sigterm = false;
  std::function<void(const std::string& line)> log;      // default: stderr
  std::function<void(const std::string& reason)> abort;  // required; should not return
};

class Watchdog {
 public:
  Watchdog(std::shared_ptr<FlightRecorder> recorder, WatchdogOptions options);
  ~Watchdog();  // stops the thread, restores the signal handlers
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // E.g. a short timeout around the pre-flight check, the normal one after it.
  void set_timeout(std::chrono::milliseconds timeout);
  // Steps 1-4 above. Runs once per watchdog; a concurrent second caller waits for the first.
  // Returns only if the abort callback does.
  void abort_job(const std::string& reason);
  // Writes this rank's dump now (no-op without a dump_dir); returns its path.
  std::filesystem::path dump(const std::string& reason) const;

 private:
  void loop();
  void check_timeout();
  void check_signals();
  void check_dump_request();
  void log(const std::string& line) const;

  std::shared_ptr<FlightRecorder> recorder_;  // read, and told which device operations finished
  WatchdogOptions options_;
  std::atomic<int64_t> timeout_ms_;
  bool timed_out_ = false;    // watchdog thread only
  std::string seen_request_;  // watchdog thread only: the dump_request content already served
  std::chrono::steady_clock::time_point last_request_check_;
  std::once_flag abort_once_;
  std::atomic<bool> aborting_{false};  // no dump-on-request once this rank dumped its own reason
  bool owns_signals_ = false;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

// Asks every watchdog watching `dump_dir` to dump (step 2 above); `reason` is logged by them.
void request_flight_dumps(const std::filesystem::path& dump_dir, const std::string& reason);
// An abort callback: MPI_Abort(MPI_COMM_WORLD, 1), after which mpirun/srun end every rank. The
// reason is not repeated: abort_job() has logged it.
void abort_mpi_job(const std::string& reason);

}  // namespace tessera
