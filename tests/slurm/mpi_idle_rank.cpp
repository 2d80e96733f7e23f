// An MPI rank that joins the world and then never talks: the peer that `tessera train`'s world
// agreement cannot reach (launch_test). It waits until its launcher kills it.
#include <mpi.h>
#include <unistd.h>

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  for (;;) pause();
}
