// Loading the specs named on the command line, and lowering them.
#include "cli/specs.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/units.hpp"

namespace strata::cli {

namespace {

std::string config_dir() {
  if (const char* env = std::getenv("STRATA_CONFIG_DIR")) return env;
  return STRATA_CONFIG_DIR;
}

}  // namespace

std::set<std::string> spec_flags_and(std::initializer_list<std::string> more) {
  std::set<std::string> flags = kSpecFlags;
  flags.insert(more.begin(), more.end());
  return flags;
}

std::string resolve_spec(const std::string& kind, const std::string& flag, const std::string& arg) {
  namespace fs = std::filesystem;
  if (fs::is_regular_file(arg)) return arg;
  // A directory, FIFO or device: say what it is rather than "no such file".
  if (const std::string what = json::special_file_kind(arg); !what.empty()) {
    const std::string spec = kind == "strategies" ? "strategy" : kind.substr(0, kind.size() - 1);
    throw ConfigError(flag + ": " + arg + " is " + what + ", not a " + spec + " spec file");
  }
  const fs::path bundled = fs::path(config_dir()) / kind / (arg + ".json");
  if (arg.find('/') == std::string::npos && fs::is_regular_file(bundled)) return bundled.string();
  std::string names;
  std::vector<std::string> found;
  if (fs::is_directory(fs::path(config_dir()) / kind)) {
    for (const auto& e : fs::directory_iterator(fs::path(config_dir()) / kind)) {
      if (e.path().extension() == ".json") found.push_back(e.path().stem().string());
    }
  }
  std::sort(found.begin(), found.end());
  for (const auto& n : found) {
    if (!names.empty()) names += ", ";
    names += n;
  }
  throw ConfigError(flag + " = " + arg + ": no such file, and no bundled spec of that name in " +
                    (fs::path(config_dir()) / kind).string() + " (bundled: " + names + ")");
}

std::vector<std::string> with_local_cluster(std::vector<std::string> argv) {
  if (std::none_of(argv.begin(), argv.end(), [](const std::string& a) {
        return a == "--cluster" || a.rfind("--cluster=", 0) == 0;
      })) {
    argv.insert(argv.end(), {"--cluster", "local-cpu"});
  }
  return argv;
}

Inputs load_inputs(const Args& args) {
  using namespace strategies;
  Inputs in;
  in.model = load_model(resolve_spec("models", "--model", args.require("--model")));
  in.cluster = load_cluster(resolve_spec("clusters", "--cluster", args.require("--cluster")));
  in.strategy = load_strategy(resolve_spec("strategies", "--strategy", args.require("--strategy")));
  if (const auto nodes = args.get_positive_int("--nodes")) {
    in.cluster = with_nodes(in.cluster, *nodes);
  }
  in.world_size = args.get_positive_int("--gpus").value_or(in.cluster.total_gpus());
  return in;
}

strategies::Plan lower_inputs(const Args& args) {
  const Inputs in = load_inputs(args);
  return strategies::lower(in.model, in.cluster, in.strategy, in.world_size);
}

std::string over_capacity(const strategies::Plan& plan, int rank) {
  return "rank " + std::to_string(rank) + " (pipeline stage " +
         std::to_string(plan.stage_of(rank)) + ") needs " +
         units::format_bytes(plan.program_of(rank).memory.peak_bytes()) + " at its peak but has " +
         units::format_bytes(plan.capacity_bytes(rank));
}

}  // namespace strata::cli
