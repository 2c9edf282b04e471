// Runs one of this folder's MPI check programs (secure_aggregation_mpi_check, ps_mpi_check)
// under mpirun for a gtest: `mpirun --oversubscribe -np RANKS PROGRAM ARGS`, bounded by
// `timeout 120` so that a hang fails, as root where CI runs so, and with leak checking off for
// the ranks (Open MPI's own allocations), as comm_mpi_test.cpp does.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace strata::test {

struct MpiCheckRun {
  int exit_code = -1;  // mpirun's (-1 when it did not exit normally)
  std::string output;  // every rank's stdout and stderr together
};

inline MpiCheckRun run_mpi_check(const std::string& mpiexec, const std::string& program,
                                 int ranks, const std::string& args = "") {
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  const std::filesystem::path out =
      std::filesystem::temp_directory_path() /
      ("strata-mpi-check-" + std::to_string(::getpid()) + "-" + std::to_string(ranks));
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::string cmd = "ASAN_OPTIONS=" + std::string(asan ? asan : "") +
                          ":detect_leaks=0 timeout 120 " + mpiexec + " --oversubscribe -np " +
                          std::to_string(ranks) + " " + program + " " + args + " >" +
                          out.string() + " 2>&1";
  const int status = std::system(cmd.c_str());
  MpiCheckRun run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(out);
  run.output.assign(std::istreambuf_iterator<char>(in), {});
  std::filesystem::remove(out);
  return run;
}

}  // namespace strata::test
