// The MPI backend's broadcast, all-to-all and ragged all-to-all (executor/comm.hpp) on 2 and 3
// ranks: runs comm_mpi_check.cpp under mpirun, which checks every result exactly on every rank.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;

namespace {

struct Result {
  int exit_code = -1;
  std::string out, err;
};

std::string read(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// `mpirun -np N comm_mpi_check`, bounded by `timeout` so that a hang fails. Leak checking is off
// for the ranks, as in executor_mpi_test.cpp (Open MPI's own allocations).
Result run_check(int ranks) {
  // CI runs as root; Open MPI refuses that without these two variables.
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  const fs::path dir =
      fs::temp_directory_path() /
      ("strata-comm-mpi-" + std::to_string(::getpid()) + "-" + std::to_string(ranks));
  fs::create_directories(dir);
  const fs::path out = dir / "stdout", err = dir / "stderr";
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::string cmd = "ASAN_OPTIONS=" + std::string(asan ? asan : "") +
                          ":detect_leaks=0 timeout 120 " + STRATA_MPIEXEC +
                          " --oversubscribe -np " + std::to_string(ranks) + " " +
                          STRATA_COMM_CHECK + " >" + out.string() + " 2>" + err.string();
  const int status = std::system(cmd.c_str());
  Result r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, read(out), read(err)};
  fs::remove_all(dir);
  return r;
}

// Over each group: a broadcast from each root and an all-to-all at 1 and 300 floats, then a
// broadcast and an all-to-all in flight together, and one ragged all-to-all. Rank 0 (in the
// world only) makes (2 roots + 1) x 2 + 2 + 1 = 9 checks; rank 1 also checks a group of one
// (itself).
TEST(CommMpi, BroadcastAndAllToAllAreExactOnTwoRanks) {
  const Result r = run_check(2);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("comm_mpi_check: 2 ranks, 9 checks passed"), std::string::npos)
      << r.out << r.err;
}

// A group of 3 (the world) and a group of 2 (world ranks 1 and 2, group ranks 0 and 1), whose
// roots are group ranks: rank 0 makes (3 roots + 1) x 2 + 2 + 1 = 11 checks.
TEST(CommMpi, BroadcastAndAllToAllAreExactOnThreeRanksAndASubgroup) {
  const Result r = run_check(3);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("comm_mpi_check: 3 ranks, 11 checks passed"), std::string::npos)
      << r.out << r.err;
}

}  // namespace
