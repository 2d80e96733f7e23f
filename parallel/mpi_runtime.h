// MpiRuntime: RAII owner of MPI's lifetime. main() creates exactly one before any
// communicator (MPI_Init_thread) and it finalizes MPI when destroyed, after every communicator
// is gone. LaunchContext: where this process sits in the launch (mpirun -np N, or
// srun --mpi=pmix), read from MPI, never from globals.
#pragma once

namespace tessera {

class MpiRuntime {
 public:
  // Initializes MPI asking for MPI_THREAD_MULTIPLE; world errors return instead of aborting.
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();  // MPI_Finalize; logs (never throws) on failure
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  int thread_level() const { return thread_level_; }  // what MPI provided (MPI_THREAD_*)

 private:
  int thread_level_ = 0;
};

struct LaunchContext {
  int rank = 0;  // in MPI_COMM_WORLD
  int world_size = 1;
  int local_rank = 0;  // among the ranks on this node (selects the GPU)
  int local_size = 1;
};

// Collective over MPI_COMM_WORLD (splits it by shared-memory node to find the local rank).
LaunchContext launch_context(const MpiRuntime& runtime);

}  // namespace tessera
