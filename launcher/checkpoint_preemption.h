// Preemption (Slurm sends SIGTERM at the time limit, or SIGUSR1 with `--signal`): while a
// PreemptionSignals is alive, SIGTERM and SIGUSR1 only set a flag; the trainer polls it at every
// step boundary, agrees with the other ranks (any rank's flag stops every rank at the same step),
// saves and exits 0. SIGUSR1 also reaches the handler installed before (the watchdog's flight
// recorder dump, which carries on); SIGTERM does not, as the watchdog would end the process
// after its dump. The previous handlers come back on destruction. One instance at a time.
#pragma once

#include <csignal>

namespace tessera {

class PreemptionSignals {
 public:
  PreemptionSignals();
  ~PreemptionSignals();
  PreemptionSignals(const PreemptionSignals&) = delete;
  PreemptionSignals& operator=(const PreemptionSignals&) = delete;

  bool seen() const;  // SIGTERM or SIGUSR1 arrived since construction
  int signal() const;  // the first one that arrived (0: none)

 private:
  struct sigaction previous_term_ = {};
  struct sigaction previous_usr1_ = {};
};

}  // namespace tessera
