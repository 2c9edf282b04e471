// Processes for the commands that start others (`strata validate`): whether this process was
// started by an MPI launcher, this executable's path, the mpirun command line for N ranks, and
// running a child with its output in a log file.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace strata::cli {

// Whether an MPI launcher started this process (Open MPI sets OMPI_COMM_WORLD_SIZE, PMIx
// launchers PMIX_RANK, Hydra PMI_SIZE): then the world is MPI's.
bool under_mpi_launcher();

// The path of the running strata executable (/proc/self/exe).
std::string self_executable();

// The launcher's words before the program for `ranks` processes. `custom` (the user's
// --mpirun, split on spaces) replaces the default: the mpiexec CMake found (else `mpirun` on
// PATH) with -np N, plus --allow-run-as-root when running as root and --oversubscribe when N
// exceeds the cores (both Open MPI's).
std::vector<std::string> mpi_launcher(int ranks, const std::optional<std::string>& custom);

// Runs `argv` (argv[0] a path, or a name looked up on PATH) and waits for it, its stdout and
// stderr appended to `log`. Returns its exit code (128 + the signal when killed). The child
// gets SIGTERM if the calling thread (so this process) dies before it ends (Linux's
// PR_SET_PDEATHSIG), so a killed command leaves no children running.
// ConfigError when it cannot be started. `without_launcher_env`: the child does not see the
// MPI launcher's variables (OMPI_*, PMIX_*, PMI_*), so that a child of a rank is not taken
// for a rank itself.
int run_logged(const std::vector<std::string>& argv, const std::string& log,
               bool without_launcher_env = false);

// A child's own message from its log: the last non-empty line, without "strata <command>: error: "
// or "strata <command>: ".
std::string child_message(const std::string& log, const std::string& command);

// The last `lines` lines of a text file (for the error of a failed child).
std::string tail_of(const std::string& file, int lines);

// A command line as it would be typed (words with spaces quoted), for messages and logs.
std::string shell_words(const std::vector<std::string>& argv);

}  // namespace strata::cli
