// `strata simulate`: lower the specs to a Plan and replay it on a SimGrid model of the cluster;
// print the report, optionally write report.json and trace.json. One simulation per process.
#include <iostream>
#include <sstream>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "common/error.hpp"
#include "common/units.hpp"
#include "profiler/roofline.hpp"
#include "sim/report.hpp"
#include "sim/simulate.hpp"
#include "strategies/plan.hpp"

namespace strata::cli {

const char* const kSimulateHelp = R"(Usage: strata simulate --model M --cluster C --strategy S [options]

Predict one training step of a strategy on a modelled cluster: the specs are lowered to a Plan,
and every rank's tasks are replayed in a SimGrid discrete-event simulation (compute durations
from the cost model, collectives as the flows of ring algorithms sharing the cluster's links).

Required:
  --model M            model spec file or bundled name (configs/models/)
  --cluster C          cluster spec file or bundled name (configs/clusters/)
  --strategy S         strategy spec file or bundled name (configs/strategies/)

Options:
  --gpus N             world size: the first N GPUs of the cluster (default: all)
  --nodes N            rescale a uniform cluster to N nodes
  --json FILE          write report.json ('-' for stdout, replacing the table)
  --trace FILE         write a Chrome/Perfetto trace.json of the traced ranks
  --trace-ranks LIST   ranks to trace: "all" or comma-separated ranks (default: the first rank
                       of every pipeline stage)
  --efficiencies FILE  the cost model's table: compute efficiencies per block and device, and
                       the fraction of each fabric's line rate collectives reach (default: the
                       bundled profiler/efficiencies.json)
  --straggler R:F      run rank R at F times its speed (e.g. 3:0.5); may be repeated as R:F,R:F
  --exact              simulate every rank and every ring step (default: fold data-parallel
                       replicas and tensor-parallel peers into one representative rank and send
                       each ring's steps as one flow per rank plus their latency;
                       docs/simulator.md shows both agree)
  --ignore-memory      simulate even when a rank's peak memory exceeds its device memory
  --help               show this help

The report gives step time, tokens/s, model and hardware TFLOP/s per GPU, MFU, the bubble
fraction and, per pipeline stage, compute, communication, exposed communication and idle
seconds and peak memory. The same inputs give the same report, byte for byte.
)";

namespace {

std::vector<int> parse_ranks(const std::string& text, int world) {
  std::vector<int> out;
  if (text == "all") {
    for (int r = 0; r < world; ++r) out.push_back(r);
    return out;
  }
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t used = 0;
    int r = -1;
    try {
      r = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || r < 0 || r >= world) {
      throw ConfigError("--trace-ranks = " + text + ": '" + item + "' is not a rank in [0, " +
                        std::to_string(world - 1) + "] (or use 'all')");
    }
    out.push_back(r);
  }
  return out;
}

std::vector<double> parse_stragglers(const std::string& text, int world) {
  std::vector<double> factors(world, 1.0);
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto colon = item.find(':');
    int r = -1;
    double f = 0;
    try {
      if (colon != std::string::npos) {
        r = std::stoi(item.substr(0, colon));
        f = std::stod(item.substr(colon + 1));
      }
    } catch (const std::exception&) {
      r = -1;
    }
    if (r < 0 || r >= world || !(f > 0)) {
      throw ConfigError("--straggler = " + text + ": '" + item +
                        "' must be RANK:FACTOR with a rank in [0, " + std::to_string(world - 1) +
                        "] and a factor > 0");
    }
    factors[r] = f;
  }
  return factors;
}

}  // namespace

int simulate_command(const std::vector<std::string>& argv) {
  if (asks_for_help(argv)) {
    std::cout << kSimulateHelp;
    return kExitOk;
  }
  std::set<std::string> with_value = kSpecFlags;
  for (const char* f : {"--json", "--trace", "--trace-ranks", "--efficiencies", "--straggler"}) {
    with_value.insert(f);
  }
  const Args args(argv, with_value, {}, {"--ignore-memory", "--exact"});
  const Inputs in = load_inputs(args);
  const strategies::Plan plan = strategies::lower(in.model, in.cluster, in.strategy, in.world_size);

  const int over = strategies::first_rank_over_capacity(plan);
  if (over >= 0 && !args.has("--ignore-memory")) {
    const auto& p = plan.program_of(over);
    throw ConfigError("strategy '" + plan.strategy.name + "' does not fit: rank " +
                      std::to_string(over) + " (pipeline stage " + std::to_string(p.stage) +
                      ") needs " + units::format_bytes(p.memory.peak_bytes()) + " but has " +
                      units::format_bytes(plan.capacity_bytes(over)) +
                      " (see `strata plan`; --ignore-memory simulates it anyway)");
  }

  const profiler::Efficiencies efficiencies = profiler::load_efficiencies(
      args.get("--efficiencies").value_or(profiler::default_efficiencies_path()));
  const profiler::RooflineCostModel cost(efficiencies);
  sim::SimOptions options;
  options.links = efficiencies.links();
  options.fold_data_parallel = !args.has("--exact");
  options.fold_tensor_parallel = !args.has("--exact");
  options.aggregate_ring_steps = !args.has("--exact");
  options.record_trace = args.has("--trace");
  if (const auto ranks = args.get("--trace-ranks")) {
    options.trace_ranks = parse_ranks(*ranks, plan.world_size);
  }
  if (const auto s = args.get("--straggler")) {
    options.speed_factors = parse_stragglers(*s, plan.world_size);
  }
  const sim::Report report = sim::simulate(plan, cost, options);

  // Serialise everything before writing anything, so a failure leaves no partial output.
  const std::string report_json = sim::report_to_json(report, plan).dump(2) + "\n";
  std::string trace_json;
  if (options.record_trace) trace_json = sim::trace_to_json(report, plan).dump() + "\n";
  if (options.record_trace) write_output(*args.get("--trace"), trace_json);
  if (args.has("--json")) write_output(*args.get("--json"), report_json);
  if (!args.has("--json") || *args.get("--json") != "-") {
    std::cout << sim::render_report(report, plan);
  }
  return kExitOk;
}

}  // namespace strata::cli
