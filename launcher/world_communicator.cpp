// The world communicator's backend (see world_communicator.h).
#include "launcher/world_communicator.h"

#include "core/check.h"
#include "core/cuda/runtime.h"
#include "parallel/mpi_communicator.h"
#ifdef TESSERA_WITH_NCCL
#include "parallel/nccl_communicator.h"
#endif

namespace tessera {

void check_world_backend(Device device, int world_size) {
#ifndef TESSERA_WITH_NCCL
  TS_CHECK(!device.is_cuda() || world_size == 1, "train.device = cuda with ", world_size,
           " ranks needs the NCCL backend, and this build has none (built without CUDA); run the ranks on CPU "
           "(train.device=cpu) or use a CUDA build");
#else
  (void)device;
  (void)world_size;
#endif
}

JobWorld make_job_world(int world_size, Device device) {
  if (device.is_cuda()) make_cuda_device_current(device.index);
  JobWorld job;
  if (world_size == 1) return job;
  job.host = std::make_unique<MpiCommunicator>(MPI_COMM_WORLD, "world");
  job.world = make_world_communicator(*job.host, device);
  return job;
}

std::unique_ptr<Communicator> make_world_communicator(Communicator& host_world, Device device) {
  check_world_backend(device, host_world.size());
#ifdef TESSERA_WITH_NCCL
  if (device.is_cuda()) return std::make_unique<NcclCommunicator>(host_world, device.index);
#endif
  return host_world.split(0, host_world.rank(), "world");
}

}  // namespace tessera
