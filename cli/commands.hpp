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

}  // namespace strata::cli
