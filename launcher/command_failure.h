// How a CLI command that runs on every rank of a job ends on an error.
#pragma once

#include <exception>

#include "parallel/mpi_runtime.h"

namespace tessera {

// Prints "tessera: error (rank R of N): ..." ("tessera: error: ..." for one rank) and, in a job of
// several ranks, aborts it through MPI: the other ranks may be waiting for this one inside a
// collective. Returns the exit status (1) where it returns at all.
int fail_command(const LaunchContext& launch, const std::exception& error);

}  // namespace tessera
