// TS_MPI_CHECK: checks an MPI call's return code and throws tessera::Error naming the call,
// file:line, MPI's error string and this process's world rank. Only for .cpp files (never .cu).
#pragma once

#include <mpi.h>

#include <string>

#include "core/check.h"

namespace tessera {

// "MPI_ERR_... (world rank R)" for an MPI return code.
std::string describe_mpi_error(int code);

inline bool mpi_succeeded(int code) { return code == MPI_SUCCESS; }

}  // namespace tessera

#define TS_MPI_CHECK(call) TS_CHECK_CALL(call, int, ::tessera::mpi_succeeded, ::tessera::describe_mpi_error)
