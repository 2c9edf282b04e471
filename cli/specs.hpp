// The spec flags every command that lowers a Plan takes (--model, --cluster, --strategy,
// --gpus, --nodes): resolving bundled names under configs/, loading, rescaling, lowering, and
// the message for a rank that does not fit.
#pragma once

#include <initializer_list>
#include <set>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "strategies/plan.hpp"
#include "strategies/spec.hpp"

namespace strata::cli {

inline const std::set<std::string> kSpecFlags = {"--model", "--cluster", "--strategy", "--gpus",
                                                 "--nodes"};
// kSpecFlags and a command's own flags that take a value.
std::set<std::string> spec_flags_and(std::initializer_list<std::string> more);

// `argv` with `--cluster local-cpu` appended when it names no cluster: the commands that run
// on this machine (run, profile ops, validate) lower their Plan for it by default.
std::vector<std::string> with_local_cluster(std::vector<std::string> argv);

struct Inputs {
  strategies::ModelSpec model;
  strategies::ClusterSpec cluster;
  strategies::StrategySpec strategy;
  int world_size = 0;  // --gpus, or every GPU of the (rescaled) cluster
};
Inputs load_inputs(const Args& args);
// load_inputs, then strategies::lower.
strategies::Plan lower_inputs(const Args& args);

// Resolves a spec argument: an existing file path, or the name of a bundled spec in
// configs/<kind>/ ("models", "clusters", "strategies"). ConfigError listing the bundled names.
std::string resolve_spec(const std::string& kind, const std::string& flag, const std::string& arg);

// The spec files --model, --cluster and --strategy name (bundled names resolved; a name that
// resolves to nothing is left to the loading to report), as inputs for check_paths.
std::vector<NamedPath> spec_inputs(const Args& args);

// "rank 8 (pipeline stage 1) needs 90.1 GiB at its peak but has 80.0 GiB".
std::string over_capacity(const strategies::Plan& plan, int rank);

}  // namespace strata::cli
