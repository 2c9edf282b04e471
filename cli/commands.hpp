// The strata subcommands. Each takes its arguments (after the subcommand name) and returns the
// process exit code; ConfigErrors propagate to main(), which prints them and exits 1.
#pragma once

#include <string>
#include <vector>

namespace strata::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitConfigError = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitOutOfMemory = 3;
// A failure while running: a rank that died or stopped answering, an I/O error on an output.
inline constexpr int kExitRuntime = 4;
// A bug in Strata (an unexpected exception): EX_SOFTWARE of sysexits.h.
inline constexpr int kExitInternal = 70;

int plan_command(const std::vector<std::string>& args);
extern const char* const kPlanHelp;
int simulate_command(const std::vector<std::string>& args);
extern const char* const kSimulateHelp;
int run_command(const std::vector<std::string>& args);
extern const char* const kRunHelp;
int compare_command(const std::vector<std::string>& args);
extern const char* const kCompareHelp;
// `strata profile ops` (args after "ops").
int profile_ops_command(const std::vector<std::string>& args);
extern const char* const kProfileOpsHelp;
// `strata profile links` (the arguments after "links").
int profile_links_command(const std::vector<std::string>& args);
extern const char* const kProfileLinksHelp;
// `strata validate`: profile, simulate, run under mpirun and compare (needs the simulator).
int validate_command(const std::vector<std::string>& args);
extern const char* const kValidateHelp;
// `strata sweep`: simulate every combination of varied spec fields in child processes.
int sweep_command(const std::vector<std::string>& args);
extern const char* const kSweepHelp;
int search_command(const std::vector<std::string>& args);
extern const char* const kSearchHelp;

}  // namespace strata::cli
