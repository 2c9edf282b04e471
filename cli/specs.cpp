// Loading the specs named on the command line, and lowering them.
#include "cli/specs.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "common/json.hpp"
#include "common/units.hpp"
#include "profiler/efficiency.hpp"
#include "profiler/roofline.hpp"
#include "profiler/schedule_costs.hpp"
#include "strategies/schedule.hpp"

namespace strata::cli {

std::string config_dir() {
  if (const char* env = std::getenv("STRATA_CONFIG_DIR")) return env;
  return STRATA_CONFIG_DIR;
}

namespace {

std::string joined(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : sep) + i;
  return out;
}

// The spec's JSON (the file at `path`, or `given`, then labelled `path` in messages) with the
// overrides of its kind applied, parsed by `parse`; an error from the parser names the file and
// the overrides that were applied.
template <typename Parse>
auto load_overridden(const std::string& kind, const std::string& path,
                     const std::vector<Override>& overrides, Parse parse,
                     const json::Json* given = nullptr) {
  json::Json j = given != nullptr ? *given : json::parse_file(path);
  std::vector<std::string> applied;
  for (const Override& o : overrides) {
    if (o.spec != kind) continue;
    apply_override(j, o);
    applied.push_back(o.text);
  }
  try {
    return parse(j, kind);
  } catch (const ConfigError& e) {
    if (applied.empty()) throw ConfigError(path + ": " + e.what());
    throw ConfigError(path + " with --set " + joined(applied, ", --set ") + ": " + e.what());
  }
}

// The path of a spec source (resolved), or its label when it carries its JSON.
std::string source_path(const SpecSource& source, const std::string& kind,
                        const std::string& flag) {
  return source.spec ? source.arg : resolve_spec(kind, flag, source.arg);
}

const json::Json* source_json(const SpecSource& source) {
  return source.spec ? &*source.spec : nullptr;
}

}  // namespace

Override parse_override(const std::string& text) {
  const std::size_t eq = text.find('=');
  if (eq == std::string::npos) {
    throw ConfigError("--set " + text + ": expected PATH=VALUE (e.g. --set strategy.tp=4)");
  }
  Override o;
  o.text = text;
  std::vector<std::string> keys;
  const std::string path = text.substr(0, eq);
  std::size_t at = 0;
  while (true) {
    const std::size_t dot = std::min(path.find('.', at), path.size());
    keys.push_back(path.substr(at, dot - at));
    if (keys.back().empty()) {
      throw ConfigError("--set " + text + ": '" + path + "' has an empty key (PATH is keys "
                        "joined by dots, e.g. cluster.gpu.memory_bytes)");
    }
    if (dot == path.size()) break;
    at = dot + 1;
  }
  o.spec = keys.front();
  if (o.spec != "model" && o.spec != "cluster" && o.spec != "strategy") {
    throw ConfigError("--set " + text + ": '" + o.spec +
                      "' is not a spec; a path starts with model, cluster or strategy");
  }
  if (keys.size() == 1) {
    throw ConfigError("--set " + text + ": name a field of the " + o.spec + " (e.g. " + o.spec +
                      "." + (o.spec == "model" ? "seq_length" : o.spec == "cluster" ? "nodes" : "tp") +
                      "=...)");
  }
  o.path.assign(keys.begin() + 1, keys.end());
  const std::string value = text.substr(eq + 1);
  try {
    o.value = json::parse(value, "--set");
  } catch (const ConfigError&) {
    o.value = value;  // not JSON: a string (schedule=1f1b, precision=bf16)
  }
  return o;
}

void apply_override(json::Json& spec, const Override& o) {
  const std::string what = "--set " + o.text + ": ";
  // A Hugging Face config: its reader ignores keys it does not know, so a misspelt key would
  // silently change nothing.
  if (o.spec == "model" && spec.is_object() && spec.contains("model_type") &&
      spec["model_type"].is_string()) {
    const std::vector<std::string> read = strategies::huggingface_keys(spec["model_type"].get<std::string>());
    if (!read.empty() && std::find(read.begin(), read.end(), o.path[0]) == read.end()) {
      throw ConfigError(what + "Strata's reader of Hugging Face \"" +
                        spec["model_type"].get<std::string>() + "\" configs does not read '" +
                        o.path[0] + "' (it reads: " + joined(read, ", ") + ")");
    }
  }
  json::Json* node = &spec;
  std::string at = o.spec;
  for (std::size_t i = 0; i < o.path.size(); ++i) {
    const std::string& key = o.path[i];
    const bool last = i + 1 == o.path.size();
    if (node->is_object()) {
      if (!node->contains(key) && !last) (*node)[key] = json::Json::object();
      node = &(*node)[key];
    } else if (node->is_array()) {
      std::size_t used = 0;
      long long index = -1;
      try {
        index = std::stoll(key, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != key.size() || index < 0 || index >= static_cast<long long>(node->size())) {
        throw ConfigError(what + at + " is a list of " + std::to_string(node->size()) +
                          " entries: '" + key + "' is not an index from 0 to " +
                          std::to_string(static_cast<long long>(node->size()) - 1));
      }
      node = &(*node)[static_cast<std::size_t>(index)];
    } else {
      throw ConfigError(what + at + " = " + json::show(*node) +
                        " has no fields: it is not an object or a list");
    }
    at += "." + key;
  }
  *node = o.value;
}

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

Inputs load_inputs(const Args& args, const json::Json* default_strategy,
                   bool recommendation_ok) {
  SpecRequest request;
  request.overrides = args.get_all("--set");
  // Malformed overrides are reported before a missing flag, as load_inputs below reports them
  // before a missing file.
  for (const std::string& text : request.overrides) parse_override(text);
  request.model.arg = args.require("--model");
  request.cluster.arg = args.require("--cluster");
  if (default_strategy != nullptr && !args.has("--strategy")) {
    request.strategy = {"(the default strategy)", *default_strategy};
  } else {
    request.strategy.arg = args.require("--strategy");
  }
  request.gpus = args.get_positive_int("--gpus");
  request.nodes = args.get_positive_int("--nodes");
  return load_inputs(request, recommendation_ok);
}

Inputs load_inputs(const SpecRequest& request, bool recommendation_ok) {
  using namespace strategies;
  Inputs in;
  std::vector<Override> overrides;
  for (const std::string& text : request.overrides) {
    overrides.push_back(parse_override(text));
    in.overrides.push_back(text);
  }
  // Malformed overrides first, then every spec file is resolved before any is read, so a
  // missing file is reported before what an override does to another file.
  const std::string model = source_path(request.model, "models", "--model");
  const std::string cluster = source_path(request.cluster, "clusters", "--cluster");
  const std::string strategy = source_path(request.strategy, "strategies", "--strategy");
  in.model = load_overridden("model", model, overrides,
                             [&](const json::Json& j, const std::string& w) {
                               if (recommendation_ok && is_recommendation_model(j)) {
                                 in.rec_model = parse_rec_model(j, w);
                                 ModelSpec named;
                                 named.name = in.rec_model->name;
                                 return named;
                               }
                               return parse_model(j, w);
                             },
                             source_json(request.model));
  in.cluster = load_overridden("cluster", cluster, overrides,
                               [](const json::Json& j, const std::string& w) {
                                 return parse_cluster(j, w);
                               },
                               source_json(request.cluster));
  in.strategy = load_overridden("strategy", strategy, overrides,
                                [](const json::Json& j, const std::string& w) {
                                  return parse_strategy(j, w);
                                },
                                source_json(request.strategy));
  if (in.rec_model && !in.strategy.ps) {
    throw ConfigError(model + ": model '" + in.rec_model->name +
                      "' is a recommendation model: it trains with a parameter-server strategy "
                      "(strategy.ps), and strategy '" + in.strategy.name + "' has none "
                      "(docs/parameter-server.md)");
  }
  // A vocabulary tp does not divide is padded as Megatron-LM pads it (GPT-2's 50257 with tp 2).
  if (!in.rec_model) in.model = padded_for_tp(in.model, in.strategy.tp);
  if (request.nodes) in.cluster = with_nodes(in.cluster, *request.nodes);
  in.world_from_gpus = request.gpus.has_value();
  in.world_size = request.gpus.value_or(in.cluster.total_gpus());
  if (in.strategy.federated) {
    // Federated (docs/federated.md): the strategy runs on each site's GPUs, the first site's
    // being the first GPUs of the cluster.
    strategies::validate_federated(in.cluster, in.strategy);
    const std::string first = in.cluster.sites().front();
    const int site = in.cluster.site_gpus(first);
    if (in.world_from_gpus && in.world_size != site) {
      throw ConfigError("--gpus " + std::to_string(in.world_size) +
                        ": a federated strategy runs on one site's GPUs (site '" + first +
                        "' has " + std::to_string(site) + "); drop --gpus");
    }
    in.world_size = site;
  }
  return in;
}

void refuse_ps(const strategies::StrategySpec& s, const std::string& command) {
  if (!s.ps) return;
  throw ConfigError("strategy '" + s.name + "': strategy.ps (a parameter server) is not "
                    "supported by `strata " + command + "` yet; `strata simulate` and `strata "
                    "plan` read it (docs/parameter-server.md)");
}

void refuse_federated(const strategies::StrategySpec& s, const std::string& command) {
  refuse_ps(s, command);
  if (!s.federated) return;
  throw ConfigError("strategy '" + s.name + "': strategy.federated is not supported by `strata " +
                    command + "` yet; `strata simulate` predicts a federated round and `strata run` "
                    "trains one (docs/federated.md)");
}

strategies::Plan lower_inputs(const Args& args, const profiler::CostModel* cost) {
  const Inputs in = load_inputs(args);
  return lower_inputs(in, in.world_size, cost);
}

namespace {

void check_world(const Inputs& in, int world_size) {
  const strategies::StrategySpec& s = in.strategy;
  const strategies::ClusterSpec& c = in.cluster;
  const long long need = static_cast<long long>(s.dp) * s.tp * s.pp * s.cp;
  if (need == world_size) return;
  auto str = [](long long v) { return std::to_string(v); };
  std::string message = "strategy '" + s.name + "' needs dp*tp*pp*cp = " + str(s.dp) + "*" +
                        str(s.tp) + "*" + str(s.pp) + "*" + str(s.cp) + " = " + str(need) +
                        " GPUs; ";
  const int total = c.total_gpus();
  if (in.world_from_gpus) {
    message += "--gpus is " + str(world_size);
  } else {
    message += "the cluster '" + c.name + "' has " + str(total);
    if (!c.heterogeneous()) {
      const auto& g = c.node_groups.front();
      message += " (" + str(g.nodes) + (g.nodes == 1 ? " node of " : " nodes of ") +
                 str(g.gpus_per_node) + ")";
    }
  }
  std::vector<std::string> fixes;
  if (need <= total) fixes.push_back("--gpus " + str(need));
  if (!c.heterogeneous() && need % c.node_groups.front().gpus_per_node == 0) {
    const long long nodes = need / c.node_groups.front().gpus_per_node;
    if (nodes != c.node_groups.front().nodes) fixes.push_back("--nodes " + str(nodes));
  }
  message += fixes.empty() ? ": the cluster is too small for it"
                           : ": use " + joined(fixes, " or ");
  const long long others = static_cast<long long>(s.tp) * s.pp * s.cp;
  if (world_size % others == 0) {
    message += " (or --set strategy.dp=" + str(world_size / others) + " to use all " +
               str(world_size) + ")";
  }
  throw ConfigError(message);
}

// MemAvailable of /proc/meminfo in bytes, or 0 when it cannot be read.
double available_host_bytes() {
  std::ifstream in("/proc/meminfo");
  for (std::string key; in >> key;) {
    double kib = 0;
    std::string unit;
    in >> kib >> unit;
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

}  // namespace

void check_world_size(const Inputs& in, int world_size) { check_world(in, world_size); }

double plan_host_bytes_estimate(const strategies::StrategySpec& s, const strategies::ModelSpec& m) {
  // Measured on gpt-tiny with 2048 micro-batches per rank (docs/specs.md "Host memory"): 15-34
  // tasks per layer and micro-batch in a program (34 with cp 4's ring steps), 380-460 bytes per
  // task; programs are per pipeline stage, so pp cancels out of the total.
  const double micro_batches = std::max(1, s.num_micro_batches());
  const double tasks_per_layer = 24.0 + 8.0 * (s.cp - 1);
  return 512.0 * micro_batches * m.num_hidden_layers * tasks_per_layer;
}

strategies::Plan lower_inputs(const Inputs& in, int world_size,
                              const profiler::CostModel* cost) {
  check_world(in, world_size);
  const double need = plan_host_bytes_estimate(in.strategy, in.model);
  const double have = available_host_bytes();
  if (have > 0 && need > have) {
    throw ConfigError(
        "strategy '" + in.strategy.name + "': its Plan would need about " +
        units::format_bytes(need) + " of host memory (" +
        std::to_string(in.strategy.num_micro_batches()) + " micro-batches x " +
        std::to_string(in.model.num_hidden_layers) + " layers, about " +
        std::to_string(24 + 8 * (in.strategy.cp - 1)) +
        " tasks of 512 bytes each), more than the " + units::format_bytes(have) +
        " this machine has available; use fewer micro-batches (strategy.global_batch_size / "
        "(micro_batch_size * dp))");
  }
  const bool priced_order = strategies::ordered_for_costs(in.strategy.schedule) ||
                            strategies::has_auto_stage_layers(in.strategy);
  std::unique_ptr<profiler::CostModel> roofline;
  if (cost == nullptr && priced_order) {
    roofline = std::make_unique<profiler::RooflineCostModel>(
        profiler::load_efficiencies(profiler::default_efficiencies_path()));
    cost = roofline.get();
  }
  strategies::Plan plan =
      cost == nullptr
          ? strategies::lower(in.model, in.cluster, in.strategy, world_size)
          : profiler::lower_priced(in.model, in.cluster, in.strategy, world_size, *cost);
  plan.provenance.overrides = in.overrides;
  return plan;
}

std::vector<NamedPath> spec_inputs(const Args& args) {
  std::vector<NamedPath> out;
  for (const auto& [kind, flag] : {std::pair<std::string, std::string>{"models", "--model"},
                                   {"clusters", "--cluster"},
                                   {"strategies", "--strategy"}}) {
    const auto v = args.get(flag);
    if (!v) continue;
    try {
      out.push_back({flag, resolve_spec(kind, flag, *v)});
    } catch (const ConfigError&) {
      // reported by the loading, with the bundled names
    }
  }
  return out;
}

std::string over_capacity(const strategies::Plan& plan, int rank) {
  return "rank " + std::to_string(rank) + " (pipeline stage " +
         std::to_string(plan.stage_of(rank)) + ") needs " +
         units::format_bytes(plan.program_of(rank).memory.peak_bytes()) + " at its peak but has " +
         units::format_bytes(plan.capacity_bytes(rank));
}

}  // namespace strata::cli
