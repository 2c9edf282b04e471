// The spec flags every command that lowers a Plan takes (--model, --cluster, --strategy,
// --gpus, --nodes, --set): resolving bundled names under configs/, loading, overriding fields
// by their JSON path, rescaling, lowering, and the message for a rank that does not fit.
#pragma once

#include <initializer_list>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cli/args.hpp"
#include "common/json.hpp"
#include "profiler/cost_model.hpp"
#include "strategies/plan.hpp"
#include "strategies/rec_model.hpp"
#include "strategies/spec.hpp"

namespace strata::cli {

inline const std::set<std::string> kSpecFlags = {"--model", "--cluster", "--strategy", "--gpus",
                                                 "--nodes", "--set"};
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
  bool world_from_gpus = false;  // whether --gpus gave it
  std::vector<std::string> overrides;  // the --set PATH=VALUE given, in order
  // A recommendation model (docs/parameter-server.md), read only where load_inputs was told
  // `recommendation_ok`; then `model` holds only its name.
  std::optional<strategies::RecModelSpec> rec_model;
};
// One spec to load: a file path or the name of a bundled one (`arg`), or the spec's JSON itself
// (`spec`, from the Python package's dicts), then `arg` only labels it in error messages.
struct SpecSource {
  std::string arg;
  std::optional<json::Json> spec;
};
// What the spec flags say, without a command line: the three specs, the --set PATH=VALUE
// overrides in order, --gpus and --nodes. The Python package (python/) loads through it.
struct SpecRequest {
  SpecSource model, cluster, strategy;
  std::vector<std::string> overrides;
  std::optional<int> gpus, nodes;  // each positive when given
};
// The request's specs with every override applied, then `nodes`: the load_inputs below without
// the flags (ConfigError for everything load_inputs refuses, naming the same flags).
Inputs load_inputs(const SpecRequest& request, bool recommendation_ok = false);

// The specs of --model, --cluster and --strategy with every --set applied, then --nodes. With
// `default_strategy`, --strategy may be absent and that JSON is the strategy (`strata search`'s
// base). A recommendation model is read into `rec_model` with `recommendation_ok` (plan and
// simulate), and must come with a ps strategy; otherwise parse_model refuses it.
Inputs load_inputs(const Args& args, const json::Json* default_strategy = nullptr,
                   bool recommendation_ok = false);
// ConfigError when the strategy is federated (docs/federated.md) or a parameter server
// (refuse_ps): `command` has no such mode yet (only `strata simulate` and `strata plan` read
// them).
void refuse_federated(const strategies::StrategySpec& s, const std::string& command);
// ConfigError when the strategy is a parameter server (docs/parameter-server.md) and `command`
// has no parameter-server mode (only `strata simulate` and `strata plan` read one).
void refuse_ps(const strategies::StrategySpec& s, const std::string& command);
// ConfigError unless the strategy fills `world_size` GPUs (dp*tp*pp*cp), saying what would fit
// (the first check of lower_inputs).
void check_world_size(const Inputs& in, int world_size);
// load_inputs, then lower_inputs below.
strategies::Plan lower_inputs(const Args& args, const profiler::CostModel* cost = nullptr);
// A rough upper estimate of the host memory lowering the Plan takes (its tasks), in bytes.
double plan_host_bytes_estimate(const strategies::StrategySpec& s, const strategies::ModelSpec& m);

// profiler::lower_priced of the inputs on `world_size` ranks, the overrides in its provenance:
// ZB-V ordered for the unit times `cost` gives (the bundled efficiencies' roofline
// when null; `simulate` passes its own, measured profiles included). A
// Plan whose estimate exceeds the host memory available (MemAvailable) is refused before any
// work, with the estimate. A
// world the strategy does not fill is a ConfigError saying what would fit: "strategy 'x' needs
// dp*tp*pp*cp = 1*8*1*1 = 8 GPUs; the cluster 'dgx-a100-128n' has 1024 (128 nodes of 8): use
// --gpus 8 or --nodes 1 (or --set strategy.dp=128 to use all 1024)".
strategies::Plan lower_inputs(const Inputs& in, int world_size,
                              const profiler::CostModel* cost = nullptr);

// One `--set PATH=VALUE`: PATH starts with model, cluster or strategy and names a field by its
// JSON keys (array entries by index: strategy.layer_overrides.0.tp); VALUE is JSON when it
// parses as JSON (numbers, true/false, lists, objects), else a string.
struct Override {
  std::string text;               // as given
  std::string spec;               // "model", "cluster" or "strategy"
  std::vector<std::string> path;  // the keys below the spec
  json::Json value;
};
// ConfigError for a malformed one (no '=', no field, an unknown spec).
Override parse_override(const std::string& text);
// Sets the field in `spec` (the parsed JSON of the file). An existing field is replaced; a
// missing key is added (with the objects above it), and the spec's parser then refuses it unless
// the format has that optional key -- except in a Hugging Face config, whose reader ignores keys
// it does not know: there a key the reader does not read is refused here. Indexing into
// something that is not an object or list is a ConfigError naming the path.
void apply_override(json::Json& spec, const Override& o);

// The folder of the bundled specs: $STRATA_CONFIG_DIR, else the source tree's configs/.
std::string config_dir();

// Resolves a spec argument: an existing file path, or the name of a bundled spec in
// configs/<kind>/ ("models", "clusters", "strategies"). ConfigError listing the bundled names.
std::string resolve_spec(const std::string& kind, const std::string& flag, const std::string& arg);

// The spec files --model, --cluster and --strategy name (bundled names resolved; a name that
// resolves to nothing is left to the loading to report), as inputs for check_paths.
std::vector<NamedPath> spec_inputs(const Args& args);

// "rank 8 (pipeline stage 1) needs 90.1 GiB at its peak but has 80.0 GiB".
std::string over_capacity(const strategies::Plan& plan, int rank);

}  // namespace strata::cli
