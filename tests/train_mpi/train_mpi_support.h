// Helpers of the checkpoint tests that drive `tessera train` (the real executable) under mpirun:
// mpirun and `tessera train` command lines (the corpus, shell runs and losses: support/cli_runs.h).
#pragma once

#include <string>
#include <vector>

#include "support/cli_runs.h"

namespace tessera::train_mpi {

using testing::Outcome;
using testing::read_losses;
using testing::read_text;
using testing::run;
using testing::write_random_corpus;

// mpirun of `ranks` ranks (none for one rank: the executable runs as an MPI singleton).
inline std::string mpirun(int ranks) {
  if (ranks == 1) return "";
  return std::string(TESSERA_MPIEXEC) +
         " --oversubscribe --allow-run-as-root --bind-to none --mca btl self,vader --mca mpi_yield_when_idle 1 -np " +
         std::to_string(ranks) + " ";
}

inline std::string train_command(const std::string& recipe, const std::vector<std::string>& overrides) {
  std::string command = std::string(TESSERA_EXECUTABLE) + " train " + recipe;
  for (const std::string& o : overrides) command += " " + o;
  return command;
}

}  // namespace tessera::train_mpi
