// `strata plan`: load specs, lower to a Plan, print the summary (text or JSON), optionally write
// plan.json. Nothing is written unless the whole command succeeds.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "common/error.hpp"
#include "common/units.hpp"
#include "strategies/plan.hpp"
#include "strategies/plan_json.hpp"

namespace strata::cli {

const char* const kPlanHelp = R"(Usage: strata plan --model M --cluster C --strategy S [options]

Lower a model, a cluster and a parallel strategy to a Plan and print its summary.

Required:
  --model M          model spec: a JSON file (ours or a Hugging Face config.json), or the name
                     of a bundled one in configs/models/ (e.g. gpt3-175b, llama2-7b)
  --cluster C        cluster spec file or bundled name (e.g. dgx-a100-128n, dgx-h100-128n)
  --strategy S       strategy spec file or bundled name (e.g. gpt3-175b-tp8-pp8-dp16)

Options:
  --gpus N           world size: use the first N GPUs of the cluster (default: all of them);
                     must equal dp*tp*pp*cp of the strategy
  --nodes N          rescale a uniform cluster to N nodes before planning
  --out FILE         write the full Plan (every task, dependency and memory event) as JSON;
                     '-' writes it to stdout
  --json [FILE]      print the summary as JSON instead of text (to FILE, or stdout)
  --ignore-memory    exit 0 even when a rank's peak memory exceeds its device memory
  --help             show this help

The summary lists the world size and groups, tasks per kind, FLOPs per step (model FLOPs and
hardware FLOPs including recomputation), bytes per collective kind and purpose, and the peak
memory of every pipeline stage (parameters, gradients, optimizer states, activations) against
the device's capacity. A strategy that does not fit prints the per-stage numbers and exits 3.
)";

namespace {

std::string config_dir() {
  if (const char* env = std::getenv("STRATA_CONFIG_DIR")) return env;
  return STRATA_CONFIG_DIR;
}

// "0-7" for consecutive ranks, "0, 8, 16, ... (8 ranks)" otherwise.
std::string format_group(const json::Json& ranks) {
  std::vector<int> r = ranks.get<std::vector<int>>();
  if (r.size() == 1) return std::to_string(r[0]);
  bool consecutive = true;
  for (std::size_t i = 1; i < r.size(); ++i) consecutive = consecutive && r[i] == r[i - 1] + 1;
  if (consecutive) return std::to_string(r.front()) + "-" + std::to_string(r.back());
  std::string out;
  for (std::size_t i = 0; i < r.size() && i < 4; ++i) out += (i ? ", " : "") + std::to_string(r[i]);
  if (r.size() > 4) out += ", ... " + std::to_string(r.back());
  return out;
}

std::string pad(std::string s, std::size_t width) {
  if (s.size() < width) s += std::string(width - s.size(), ' ');
  return s;
}
std::string lpad(std::string s, std::size_t width) {
  if (s.size() < width) s = std::string(width - s.size(), ' ') + s;
  return s;
}

std::string count(double n) {
  std::ostringstream os;
  os.precision(0);
  os << std::fixed << n;
  return os.str();
}

std::string render_summary(const json::Json& j) {
  using units::format_bytes;
  std::ostringstream os;
  const auto& d = j["degrees"];
  os << "Strata plan: " << j["model"].get<std::string>() << " on "
     << j["cluster"].get<std::string>() << ", strategy " << j["strategy"].get<std::string>()
     << "\n";
  os << "  world          " << j["world_size"] << " ranks = dp " << d["dp"] << " x tp " << d["tp"]
     << " x pp " << d["pp"] << " x cp " << d["cp"] << " (ep " << d["ep"] << " inside dp), order "
     << j["order"].get<std::string>() << "\n";
  os << "  schedule       " << j["schedule"].get<std::string>();
  if (j["virtual_stages"].get<int>() > 1) os << " x" << j["virtual_stages"] << " virtual stages";
  os << ", " << j["num_micro_batches"] << " micro-batches of " << j["micro_batch_size"]
     << " (global batch " << j["global_batch_size"] << ")\n";
  os << "  options        ZeRO-" << j["zero_stage"] << ", recompute "
     << j["recompute"].get<std::string>() << ", sequence parallel "
     << (j["sequence_parallel"].get<bool>() ? "on" : "off") << ", "
     << j["precision"].get<std::string>();
  if (j["layer_overrides"].get<int>() > 0) os << ", " << j["layer_overrides"] << " layer overrides";
  os << "\n";
  os << "  groups         ";
  bool first = true;
  for (const char* dim : {"tp", "dp", "pp", "cp", "ep"}) {
    const auto& g = j["groups"][dim];
    if (g["size"].get<int>() == 1) continue;
    os << (first ? "" : "\n                 ") << dim << ": " << g["count"] << " groups of "
       << g["size"] << " (rank 0's: " << format_group(g["rank0"]) << ")";
    first = false;
  }
  if (first) os << "none (one rank)";
  os << "\n";
  os << "  parameters     " << units::format_count(j["params"]["total"].get<double>()) << "\n";
  const auto& f = j["flops_per_step"];
  os << "  FLOPs / step   model " << units::format_flops(f["model"].get<double>())
     << ", hardware (with recompute) " << units::format_flops(f["hardware"].get<double>())
     << "; Megatron eq. 3: " << units::format_flops(f["megatron_eq3"].get<double>()) << "\n";
  const auto& t = j["tasks"];
  os << "  tasks          " << count(t["total"].get<double>()) << " over all ranks ("
     << count(t["compute"].get<double>()) << " compute, " << count(t["collective"].get<double>())
     << " collective, " << count(t["send"].get<double>()) << " send, "
     << count(t["recv"].get<double>()) << " recv); " << count(t["per_rank_max"].get<double>())
     << " per rank at most, " << t["distinct_programs"] << " distinct programs\n";
  os << "  communication  (per step)\n";
  os << "    " << pad("kind", 16) << pad("purpose", 11) << lpad("count", 12)
     << lpad("per rank", 14) << lpad("all ranks", 14) << "\n";
  for (const auto& c : j["communication"]) {
    os << "    " << pad(c["kind"].get<std::string>(), 16) << pad(c["purpose"].get<std::string>(), 11)
       << lpad(count(c["count"].get<double>()), 12)
       << lpad(format_bytes(c["bytes_per_rank"].get<double>()), 14)
       << lpad(format_bytes(c["bytes"].get<double>()), 14) << "\n";
  }
  os << "  memory per rank, by pipeline stage\n";
  os << "    " << pad("stage", 7) << lpad("ranks", 6) << lpad("params", 12) << lpad("grads", 12)
     << lpad("optimizer", 12) << lpad("activations", 13) << lpad("peak", 12)
     << lpad("capacity", 12) << "  fits\n";
  for (const auto& s : j["memory"]["stages"]) {
    os << "    " << pad(std::to_string(s["stage"].get<int>()), 7)
       << lpad(std::to_string(s["ranks"].get<int>()), 6)
       << lpad(format_bytes(s["params_bytes"].get<double>()), 12)
       << lpad(format_bytes(s["grads_bytes"].get<double>()), 12)
       << lpad(format_bytes(s["optimizer_bytes"].get<double>()), 12)
       << lpad(format_bytes(s["dynamic_peak_bytes"].get<double>()), 13)
       << lpad(format_bytes(s["peak_bytes"].get<double>()), 12)
       << lpad(format_bytes(s["capacity_bytes"].get<double>()), 12) << "  "
       << (s["fits"].get<bool>() ? "yes" : "NO") << "\n";
  }
  os << "  fits           " << (j["memory"]["fits"].get<bool>() ? "yes" : "NO") << " (peak "
     << format_bytes(j["memory"]["max_peak_bytes"].get<double>()) << ")\n";
  return os.str();
}

}  // namespace

std::string resolve_spec(const std::string& kind, const std::string& flag, const std::string& arg) {
  namespace fs = std::filesystem;
  if (fs::is_regular_file(arg)) return arg;
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

Inputs load_inputs(const Args& args) {
  using namespace strategies;
  Inputs in;
  in.model = load_model(resolve_spec("models", "--model", args.require("--model")));
  in.cluster = load_cluster(resolve_spec("clusters", "--cluster", args.require("--cluster")));
  in.strategy =
      load_strategy(resolve_spec("strategies", "--strategy", args.require("--strategy")));
  if (const auto nodes = args.get_positive_int("--nodes")) {
    in.cluster = with_nodes(in.cluster, *nodes);
  }
  in.world_size = args.get_positive_int("--gpus").value_or(in.cluster.total_gpus());
  return in;
}

int plan_command(const std::vector<std::string>& argv) {
  if (asks_for_help(argv)) {
    std::cout << kPlanHelp;
    return kExitOk;
  }
  std::set<std::string> with_value = kSpecFlags;
  with_value.insert("--out");
  const Args args(argv, with_value, {"--json"}, {"--ignore-memory"});
  using namespace strategies;
  const Inputs in = load_inputs(args);
  const Plan plan = lower(in.model, in.cluster, in.strategy, in.world_size);
  const json::Json summary = plan_summary(plan);
  const bool fits = summary["memory"]["fits"].get<bool>();
  const bool ok = fits || args.has("--ignore-memory");

  if (ok && args.has("--out")) write_output(*args.get("--out"), plan_to_json(plan).dump() + "\n");
  if (args.has("--json")) {
    if (ok || *args.get("--json") == "-") {
      write_output(*args.get("--json"), summary.dump(2) + "\n");
    }
  } else {
    std::cout << render_summary(summary);
  }
  if (!fits) {
    const int r = summary["memory"]["first_rank_over_capacity"].get<int>();
    const Program& p = plan.program_of(r);
    std::cerr << "strata plan: " << (ok ? "warning" : "error") << ": rank " << r
              << " (pipeline stage " << p.stage << ") needs "
              << units::format_bytes(p.memory.peak_bytes()) << " at its peak but has "
              << units::format_bytes(plan.capacity_bytes(r))
              << "; reduce memory (recompute, ZeRO, more tp/pp) or pass --ignore-memory\n";
  }
  return ok ? kExitOk : kExitOutOfMemory;
}

}  // namespace strata::cli
