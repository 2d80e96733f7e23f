#include "launcher/command_failure.h"

#include <fmt/format.h>
#include <mpi.h>

#include <cstdio>

namespace tessera {

int fail_command(const LaunchContext& launch, const std::exception& error) {
  const bool several = launch.world_size > 1;
  fmt::print(stderr, "tessera: error{}: {}\n", several ? fmt::format(" (rank {} of {})", launch.rank, launch.world_size) : "",
             error.what());
  std::fflush(stderr);
  if (several) MPI_Abort(MPI_COMM_WORLD, 1);
  return 1;
}

}  // namespace tessera
