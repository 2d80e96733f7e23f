// Which backend connects the ranks of a training run: the one place that decides it.
//   CPU tensors: MpiCommunicator over every rank of the launch.
//   CUDA tensors: NcclCommunicator bootstrapped over the MPI world (its unique id broadcast
//     over MPI), on this rank's GPU (train.device's index: the local rank).
// A single process needs no communicator: its trainer runs without process groups.
#pragma once

#include <memory>

#include "core/device.h"
#include "parallel/communicator.h"

namespace tessera {

// Throws a one-line reason when this build cannot connect `world_size` ranks on `device` (a
// build without CUDA/NCCL). No communication: every rank checks before any collective, so all
// of them fail or none.
void check_world_backend(Device device, int world_size);

// The communicator that training groups split from, over the ranks of `host_world` (the MPI
// world, CPU tensors) for tensors on `device`. Checks the backend first; collective over
// host_world.
std::unique_ptr<Communicator> make_world_communicator(Communicator& host_world, Device device);

// A post-training command's job: with CUDA, this rank's GPU made current first (cuDNN and NCCL
// launch on the current device); with several ranks, the MPI world and the communicator over it
// (`world` is null for a single process).
struct JobWorld {
  std::unique_ptr<Communicator> host;
  std::unique_ptr<Communicator> world;
};
JobWorld make_job_world(int world_size, Device device);

}  // namespace tessera
