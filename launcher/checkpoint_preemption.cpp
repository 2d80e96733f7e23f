#include "launcher/checkpoint_preemption.h"

#include <atomic>

#include "core/check.h"

namespace tessera {

namespace {

// Only lock-free atomics are touched in the handler.
std::atomic<int> first_signal{0};
std::atomic<bool> installed{false};
struct sigaction chained_usr1 = {};
static_assert(std::atomic<int>::is_always_lock_free, "signal flags must be lock-free");

void on_signal(int signal, siginfo_t* info, void* context) {
  int expected = 0;
  first_signal.compare_exchange_strong(expected, signal);
  if (signal != SIGUSR1) return;
  if (chained_usr1.sa_flags & SA_SIGINFO) {
    if (chained_usr1.sa_sigaction != nullptr) chained_usr1.sa_sigaction(signal, info, context);
  } else if (chained_usr1.sa_handler != SIG_DFL && chained_usr1.sa_handler != SIG_IGN) {
    chained_usr1.sa_handler(signal);
  }
}

void install(int signal, struct sigaction* previous) {
  struct sigaction action = {};
  action.sa_sigaction = on_signal;
  action.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&action.sa_mask);
  TS_CHECK(sigaction(signal, &action, previous) == 0, "train: cannot install the handler of signal ", signal);
}

}  // namespace

PreemptionSignals::PreemptionSignals() {
  bool expected = false;
  TS_CHECK(installed.compare_exchange_strong(expected, true),
           "PreemptionSignals: another instance already handles SIGTERM/SIGUSR1");
  first_signal.store(0);
  install(SIGUSR1, &previous_usr1_);
  chained_usr1 = previous_usr1_;
  install(SIGTERM, &previous_term_);
}

PreemptionSignals::~PreemptionSignals() {
  sigaction(SIGTERM, &previous_term_, nullptr);
  sigaction(SIGUSR1, &previous_usr1_, nullptr);
  installed.store(false);
}

bool PreemptionSignals::seen() const { return first_signal.load() != 0; }

int PreemptionSignals::signal() const { return first_signal.load(); }

}  // namespace tessera
