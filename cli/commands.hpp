// The strata subcommands. Each takes its arguments (after the subcommand name) and returns the
// process exit code; ConfigErrors propagate to main(), which prints them and exits 1.
#pragma once

#include <string>
#include <vector>

#include "cli/args.hpp"
#include "strategies/spec.hpp"

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

// The flags every command that lowers a Plan takes, and what they load.
inline const std::set<std::string> kSpecFlags = {"--model", "--cluster", "--strategy", "--gpus",
                                                 "--nodes"};
struct Inputs {
  strategies::ModelSpec model;
  strategies::ClusterSpec cluster;
  strategies::StrategySpec strategy;
  int world_size = 0;  // --gpus, or every GPU of the (rescaled) cluster
};
Inputs load_inputs(const Args& args);

// Resolves a spec argument: an existing file path, or the name of a bundled spec in
// configs/<kind>/ ("models", "clusters", "strategies"). ConfigError listing the bundled names.
std::string resolve_spec(const std::string& kind, const std::string& flag, const std::string& arg);

}  // namespace strata::cli
