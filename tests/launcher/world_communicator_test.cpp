// The world backend decision: CPU ranks always connect (MPI); one CUDA rank needs no
// communicator; several CUDA ranks need NCCL, which only CUDA builds have: a build without it
// refuses them in one line. Pure checks, no MPI needed.
#include "launcher/world_communicator.h"

#include <gtest/gtest.h>

#include "core/check.h"

namespace tessera {
namespace {

TEST(WorldBackend, CpuRanksAndOneGpuRankAreAccepted) {
  EXPECT_NO_THROW(check_world_backend(Device::cpu(), 1));
  EXPECT_NO_THROW(check_world_backend(Device::cpu(), 8));
  EXPECT_NO_THROW(check_world_backend(Device::cuda(0), 1));
}

#ifdef TESSERA_WITH_NCCL
TEST(WorldBackend, SeveralGpuRanksUseNccl) { EXPECT_NO_THROW(check_world_backend(Device::cuda(1), 4)); }
#else
TEST(WorldBackend, SeveralGpuRanksWithoutNcclAreRefusedNamingTheWayOut) {
  try {
    check_world_backend(Device::cuda(1), 4);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("train.device = cuda with 4 ranks needs the NCCL backend"), std::string::npos) << message;
    EXPECT_NE(message.find("train.device=cpu"), std::string::npos) << message;
  }
}
#endif

}  // namespace
}  // namespace tessera
