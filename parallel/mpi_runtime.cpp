// MPI lifetime and launch coordinates (see mpi_runtime.h).
#include "parallel/mpi_runtime.h"

#include <mpi.h>

#include <cstdio>

#include "parallel/mpi_check.h"

namespace tessera {

std::string describe_mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) length = 0;
  int initialized = 0, finalized = 0, world_rank = -1;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  return detail::concat(length ? std::string(text, length) : std::string("MPI error ") + std::to_string(code),
                        " (world rank ", world_rank, ")");
}

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  int initialized = 0;
  TS_MPI_CHECK(MPI_Initialized(&initialized));
  TS_CHECK(!initialized,
           "MpiRuntime: MPI is already initialized; create exactly one MpiRuntime "
           "in main() and pass it down");
  TS_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &thread_level_));
  TS_MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
}

MpiRuntime::~MpiRuntime() {
  int code = MPI_Finalize();
  if (code != MPI_SUCCESS) {
    std::fprintf(stderr, "MpiRuntime: MPI_Finalize failed: %s\n", describe_mpi_error(code).c_str());
  }
}

LaunchContext launch_context(const MpiRuntime&) {
  LaunchContext context;
  TS_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &context.rank));
  TS_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &context.world_size));
  MPI_Comm node = MPI_COMM_NULL;
  TS_MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, context.rank, MPI_INFO_NULL, &node));
  int rank_code = MPI_Comm_rank(node, &context.local_rank);
  int size_code = MPI_Comm_size(node, &context.local_size);
  TS_MPI_CHECK(MPI_Comm_free(&node));
  TS_MPI_CHECK(rank_code);
  TS_MPI_CHECK(size_code);
  return context;
}

}  // namespace tessera
