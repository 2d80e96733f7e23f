// GoogleTest main for tests run as real ranks under mpirun (tests/mpi). Initialises MPI, lets
// only rank 0 print the usual report (other ranks print just their failures, prefixed with
// their rank), and exits non-zero on every rank if any rank failed (failure counts all-reduced).
#include "tests/mpi/mpi_test_main.h"

#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <memory>

namespace tessera::testing {

namespace {

const MpiRuntime* runtime_for_tests = nullptr;

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (!result.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: failure\n%s\n", rank_, result.file_name() ? result.file_name() : "?",
                 result.line_number(), result.summary());
  }

 private:
  int rank_;
};

}  // namespace

const MpiRuntime& mpi_runtime() { return *runtime_for_tests; }

}  // namespace tessera::testing

int main(int argc, char** argv) {
  tessera::MpiRuntime runtime(&argc, &argv);
  tessera::testing::runtime_for_tests = &runtime;
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new tessera::testing::RankFailurePrinter(rank));
  }
  int failed = RUN_ALL_TESTS() != 0 ? 1 : 0;
  int failed_ranks = 0;
  MPI_Allreduce(&failed, &failed_ranks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  if (rank == 0 && failed_ranks > 0) {
    std::fprintf(stderr, "%d rank(s) failed\n", failed_ranks);
  }
  return failed_ranks > 0 ? 1 : 0;
}
