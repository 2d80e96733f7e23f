// The MPI test main (mpi_test_main.cpp) owns the MpiRuntime; tests that need it (launch
// coordinates) reach it here. Every test in tests/mpi runs on all ranks in the same order.
#pragma once

#include "parallel/mpi_runtime.h"

namespace tessera::testing {

const MpiRuntime& mpi_runtime();

}  // namespace tessera::testing
