// Hang watchdog, dump requests and dump-on-signal (see watchdog.h).
#include "parallel/watchdog.h"

#include <mpi.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <vector>

#include "core/check.h"

namespace tessera {

namespace {

constexpr const char* kRequestFile = "dump_request";

// Signal state shared with the handler: only lock-free atomics are touched there.
constexpr int kUsr1Bit = 1;
constexpr int kTermBit = 2;
std::atomic<int> pending_signals{0};
std::atomic<bool> signals_owned{false};
struct sigaction previous_usr1 = {};
struct sigaction previous_term = {};
static_assert(std::atomic<int>::is_always_lock_free, "signal flags must be lock-free");

void on_signal(int signal, siginfo_t* info, void* context) {
  pending_signals.fetch_or(signal == SIGTERM ? kTermBit : kUsr1Bit);
  if (signal != SIGTERM) return;
  // A handler installed before ours (a trainer saving on SIGTERM) still runs.
  if (previous_term.sa_flags & SA_SIGINFO) {
    if (previous_term.sa_sigaction != nullptr) previous_term.sa_sigaction(signal, info, context);
  } else if (previous_term.sa_handler != SIG_DFL && previous_term.sa_handler != SIG_IGN) {
    previous_term.sa_handler(signal);
  }
}

void install(int signal, struct sigaction* previous) {
  struct sigaction action = {};
  action.sa_sigaction = on_signal;
  action.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&action.sa_mask);
  TS_CHECK(sigaction(signal, &action, previous) == 0, "Watchdog: cannot install the handler of signal ", signal);
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return {};
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

int64_t unix_us_now() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string seconds_text(double seconds) {
  std::ostringstream out;
  out.precision(seconds < 10 ? 2 : 4);
  out << seconds << " s";
  return out.str();
}

}  // namespace

Watchdog::Watchdog(std::shared_ptr<FlightRecorder> recorder, WatchdogOptions options)
    : recorder_(std::move(recorder)), options_(std::move(options)), timeout_ms_(options_.timeout.count()) {
  TS_CHECK(recorder_ != nullptr, "Watchdog: needs the flight recorder to watch");
  TS_CHECK(static_cast<bool>(options_.abort),
           "Watchdog: options.abort is required (abort_mpi_job for MPI jobs, or a NCCL communicator abort)");
  TS_CHECK(options_.timeout.count() > 0 && options_.poll_interval.count() > 0 &&
               options_.request_poll_interval.count() > 0 && options_.dump_grace.count() >= 0,
           "Watchdog: timeout (", options_.timeout.count(), " ms), poll_interval (", options_.poll_interval.count(),
           " ms) and request_poll_interval (", options_.request_poll_interval.count(),
           " ms) must be > 0 and dump_grace >= 0");
  if (!options_.dump_dir.empty()) {
    std::error_code error;
    std::filesystem::create_directories(options_.dump_dir, error);
    TS_CHECK(!error, "Watchdog: cannot create the dump folder ", options_.dump_dir.string(), ": ", error.message());
    std::filesystem::remove(options_.dump_dir / flight_dump_file_name(recorder_->global_rank()), error);
    seen_request_ = read_text(options_.dump_dir / kRequestFile);
  }
  if (options_.dump_on_sigusr1 || options_.dump_on_sigterm) {
    bool expected = false;
    TS_CHECK(signals_owned.compare_exchange_strong(expected, true),
             "Watchdog: another watchdog of this process already handles SIGUSR1/SIGTERM; keep one watchdog per "
             "process, or set dump_on_sigusr1 and dump_on_sigterm to false");
    owns_signals_ = true;
    pending_signals.store(0);
    if (options_.dump_on_sigusr1) install(SIGUSR1, &previous_usr1);
    if (options_.dump_on_sigterm) install(SIGTERM, &previous_term);
  }
  last_request_check_ = std::chrono::steady_clock::now();
  thread_ = std::thread(&Watchdog::loop, this);
}

Watchdog::~Watchdog() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  if (owns_signals_) {
    if (options_.dump_on_sigusr1) sigaction(SIGUSR1, &previous_usr1, nullptr);
    if (options_.dump_on_sigterm) sigaction(SIGTERM, &previous_term, nullptr);
    signals_owned.store(false);
  }
}

void Watchdog::set_timeout(std::chrono::milliseconds timeout) {
  TS_CHECK(timeout.count() > 0, "Watchdog: timeout must be > 0 ms, got ", timeout.count());
  timeout_ms_.store(timeout.count());
}

void Watchdog::log(const std::string& line) const {
  if (options_.log) {
    options_.log(line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  }
}

std::filesystem::path Watchdog::dump(const std::string& reason) const {
  if (options_.dump_dir.empty()) return {};
  return recorder_->dump(options_.dump_dir, reason);
}

void Watchdog::loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, options_.poll_interval, [this] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    // The thread must outlive any failure (an unwritable folder): log and keep watching.
    try {
      check_signals();
      check_dump_request();
      recorder_->poll_device_completions();
      check_timeout();
    } catch (const std::exception& error) {
      log(detail::concat("watchdog: rank ", recorder_->global_rank(), ": ", error.what()));
    }
    lock.lock();
  }
}

void Watchdog::check_timeout() {
  if (timed_out_) return;
  auto oldest = recorder_->oldest_in_flight();
  if (!oldest) return;
  const auto& [record, group] = *oldest;
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - record.started_at).count();
  double timeout = static_cast<double>(timeout_ms_.load()) / 1000.0;
  if (waited < timeout) return;
  timed_out_ = true;
  abort_job(detail::concat(describe_op(record), " on group '", group.name, "' (group rank ", group.group_rank, " of ",
                           group.size(), ", members ", ranks_text(group.members), ") has not completed after ",
                           seconds_text(waited), " (timeout ", seconds_text(timeout), ")"));
}

void Watchdog::check_signals() {
  int signals = pending_signals.exchange(0);
  if (signals == 0) return;
  std::string name = (signals & kTermBit) ? "SIGTERM" : "SIGUSR1";
  std::filesystem::path path = dump("signal " + name);
  log(detail::concat("watchdog: rank ", recorder_->global_rank(), " received ", name,
                     path.empty() ? std::string("; no dump folder is set") : "; dumped to " + path.string()));
  if ((signals & kTermBit) && !(previous_term.sa_flags & SA_SIGINFO) && previous_term.sa_handler == SIG_DFL) {
    // Terminate as SIGTERM would have without us.
    signal(SIGTERM, SIG_DFL);
    raise(SIGTERM);
  }
}

void Watchdog::check_dump_request() {
  if (options_.dump_dir.empty() || aborting_.load()) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_request_check_ < options_.request_poll_interval) return;
  last_request_check_ = now;
  std::string request = read_text(options_.dump_dir / kRequestFile);
  if (request.empty() || request == seen_request_) return;
  seen_request_ = request;
  std::string reason = "requested: " + request.substr(0, request.find('\n'));
  std::filesystem::path path = dump(reason);
  log(detail::concat("watchdog: rank ", recorder_->global_rank(), " dumped to ", path.string(), " (", reason, ")"));
}

void Watchdog::abort_job(const std::string& reason) {
  std::call_once(abort_once_, [&] {
    aborting_.store(true);
    int rank = recorder_->global_rank();
    log(detail::concat("watchdog: rank ", rank, " aborts the job: ", reason));
    if (!options_.dump_dir.empty()) {
      try {
        dump(reason);
        request_flight_dumps(options_.dump_dir, detail::concat("rank ", rank, ": ", reason));
        log(detail::concat("watchdog: rank ", rank, " dumped its flight recorder and asked every rank to dump into ",
                           options_.dump_dir.string(), "; waiting up to ",
                           seconds_text(options_.dump_grace.count() / 1e3)));
        auto deadline = std::chrono::steady_clock::now() + options_.dump_grace;
        std::vector<int> missing;
        while (true) {
          missing.clear();
          for (int r = 0; r < recorder_->world_size(); ++r) {
            if (!std::filesystem::exists(options_.dump_dir / flight_dump_file_name(r))) missing.push_back(r);
          }
          if (missing.empty() || std::chrono::steady_clock::now() >= deadline) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        log(missing.empty()
                ? detail::concat("watchdog: all ", recorder_->world_size(),
                                 " ranks dumped; diagnose with `tessera doctor hang ", options_.dump_dir.string(), "`")
                : detail::concat("watchdog: no dump from ranks ", ranks_text(missing), " after ",
                                 seconds_text(options_.dump_grace.count() / 1e3),
                                 "; they may be dead or on another filesystem"));
      } catch (const std::exception& error) {
        log(detail::concat("watchdog: rank ", rank, " could not dump: ", error.what()));
      }
    }
    options_.abort(reason);
  });
}

void request_flight_dumps(const std::filesystem::path& dump_dir, const std::string& reason) {
  std::error_code ignored;
  std::filesystem::create_directories(dump_dir, ignored);
  // A new token every time, so a watchdog that served an earlier request serves this one too.
  std::filesystem::path temporary = dump_dir / (std::string(kRequestFile) + ".tmp" + std::to_string(getpid()));
  {
    std::ofstream out(temporary, std::ios::trunc);
    TS_CHECK(out.good(), "request_flight_dumps: cannot write ", temporary.string());
    std::string line = reason;
    for (char& c : line) c = c == '\n' ? ' ' : c;
    out << line << '\n' << "token " << getpid() << '-' << unix_us_now() << '\n';
  }
  std::error_code error;
  std::filesystem::rename(temporary, dump_dir / kRequestFile, error);
  TS_CHECK(!error, "request_flight_dumps: cannot rename ", temporary.string(), ": ", error.message());
}

void abort_mpi_job(const std::string& /*reason*/) { MPI_Abort(MPI_COMM_WORLD, 1); }

}  // namespace tessera
