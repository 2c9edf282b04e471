// `strata simulate`: lower the specs to a Plan and replay it on a SimGrid model of the cluster;
// print the report, optionally write report.json and trace.json. One simulation per process.
#include <algorithm>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>

#include "cli/args.hpp"
#include "cli/child_process.hpp"
#include "cli/commands.hpp"
#include "cli/interrupt.hpp"
#include "cli/progress.hpp"
#include "cli/ps.hpp"
#include "cli/specs.hpp"
#include "cli/switch_schedule.hpp"
#include "cli/switching.hpp"
#include "common/error.hpp"
#include "profiler/profiled_cost_model.hpp"
#include "profiler/roofline.hpp"
#include "results/report.hpp"
#include "results/trace.hpp"
#include "sim/failures.hpp"
#include "sim/federated.hpp"
#include "sim/ps.hpp"
#include "sim/simulate.hpp"
#include "strategies/federated.hpp"

namespace strata::cli {

const char* const kSimulateHelp =
    R"(Usage: strata simulate --model M --cluster C --strategy S [options]
       strata simulate --model M --cluster C --switch SCHEDULE [options]

Predict one training step of a strategy on a modelled cluster: the specs are lowered to a Plan,
and every rank's tasks are replayed in a SimGrid discrete-event simulation (compute durations
from the cost model, collectives as the flows of ring, hierarchical or tree algorithms sharing
the cluster's links at the cost model's fraction of their line rate).

Required:
  --model M            model spec file or bundled name (configs/models/)
  --cluster C          cluster spec file or bundled name (configs/clusters/)
  --strategy S         strategy spec file or bundled name (configs/strategies/)

Options:
  --gpus N             world size: the first N GPUs of the cluster (default: all)
  --nodes N            rescale a uniform cluster to N nodes
  --set PATH=VALUE     override a spec field, e.g. --set strategy.tp=4 (repeatable; checked
                       like the file; docs/specs.md "Overriding fields: --set")
  --json FILE          write report.json ('-' for stdout, replacing the table)
  --trace FILE         write a Chrome/Perfetto trace.json of the traced ranks
  --trace-ranks LIST   ranks to trace: "all" or comma-separated ranks (default: the first rank
                       of every pipeline stage)
  --efficiencies FILE  the roofline cost model's table: compute efficiencies per block and
                       device, and the fraction of each fabric's line rate collectives reach
                       (default: the bundled profiler/efficiencies.json)
  --profile FILES      measured op costs (profile.json from `strata profile ops`; several
                       comma-separated, one per device): ops measured on a device of the
                       cluster are priced from them, the rest by the roofline
  --links FILES        measured collective curves (links.json from `strata profile links`,
                       comma-separated): each measured fabric's efficiency and latency
  --straggler R:F      run rank R at F times its speed (e.g. 3:0.5); may be repeated as R:F,R:F
  --exact              simulate every rank and every ring step (default: fold data-parallel
                       replicas and tensor-parallel peers into one representative rank and send
                       each ring's steps as one flow per rank plus their latency;
                       docs/simulator.md shows both agree; with zero_shard_group < dp every
                       data-parallel rank runs)
  --failures FILE      a failure spec (docs/failures.md): after the step, simulate a span of
                       many steps with checkpoints, failures (a rate per GPU-hour and explicit
                       events), detection and restart (or shrinking dp), and report goodput,
                       effective tokens/s and the Young/Daly checkpoint interval against the
                       best one a sweep finds (printed, and report.json's "failures" section;
                       with reaction "shrink" the step is also simulated at each smaller dp)
  --switch FILE        a strategy schedule (docs/switching.md) instead of --strategy: phases of
                       strategies, each for some steps, on the same GPUs. Each phase's step is
                       simulated, and each switch's resharding of the training state (parameters,
                       master weights, Adam moments) as one uneven all-to-all; prints per phase
                       the step and phase time and tokens/s, per switch the bytes moved, the
                       largest per-rank send and the simulated seconds, and the span's total;
                       report.json is the first phase's report with a "switching" section. Not
                       with --failures, --trace or --trace-ranks
  --rounds N           a federated strategy (docs/federated.md): the rounds the report's time to
                       target counts (default 100)
  --steps N            a parameter-server strategy (docs/parameter-server.md): the steps the
                       PS simulation runs (default 20, at least 2; the first quarter is warm-up)
  --ignore-memory      simulate even when a rank's peak memory exceeds its device memory
  --quiet              no progress line (lowering, simulating: the share of tasks done,
                       writing), which is shown on stderr only when it is a terminal
  --help               show this help

Outputs are checked before any work (none may be an input or share another output's path;
their directories must be writable) and written all or none: a failure leaves none of them.

With a federated strategy (docs/federated.md) the step is one site's, on its GPUs, and the
report adds the round: K local steps and the aggregation of the model over the WAN, simulated
as flows between the sites in a child process, bytes per site, and the time to --rounds rounds
(report.json's "federated" section).

With a parameter-server strategy (strategy.ps; docs/parameter-server.md) the workers' pulls,
compute, pushes and the servers' updates are simulated for --steps steps in a child process, the
consistency model (bsp, ssp, asp) as dependencies; a worker's compute is one replica's simulated
step less its optimizer (GPT: the strategy with dp = 1 on one GPU, whose report is printed and
is report.json's body) or a roofline (a recommendation model, family "recommendation":
report.json is then a "strata.ps_report" holding the specs and the "ps" section). The report
adds the steady-state step, samples/s, per-server bytes and load, per-worker waiting and the
largest staleness.
Not with --failures, --trace, --trace-ranks, --straggler or --rounds.

The report gives step time, tokens/s, model and hardware TFLOP/s per GPU, MFU, the bubble
fraction and, per pipeline stage, compute, communication, exposed communication and idle
seconds and peak memory. The same inputs give the same report, byte for byte (with --profile
and --links: the same files). With measured costs it says how many of the simulated compute
tasks and collectives were priced by measurements (docs/profiles.md "Using them").

Exit codes: 0 success, 1 invalid input, 2 usage error, 3 does not fit in memory, 4 runtime
failure, 70 internal error (the table: strata --help, cli/README.md).
)";

namespace {

// The roofline, or with --profile / --links the measured costs in front of it.
std::unique_ptr<profiler::CostModel> cost_model(const Args& args,
                                                const strategies::ClusterSpec& cluster) {
  profiler::RooflineCostModel roofline(profiler::load_efficiencies(
      args.get("--efficiencies").value_or(profiler::default_efficiencies_path())));
  if (!args.has("--profile") && !args.has("--links")) {
    return std::make_unique<profiler::RooflineCostModel>(std::move(roofline));
  }
  std::vector<std::string> op_files, link_files;
  if (const auto p = args.get("--profile")) op_files = comma_list("--profile", *p);
  if (const auto l = args.get("--links")) link_files = comma_list("--links", *l);
  std::vector<profiler::OpProfile> ops;
  std::vector<profiler::LinkProfile> links;
  for (const std::string& f : op_files) ops.push_back(profiler::read_op_profile(f));
  for (const std::string& f : link_files) links.push_back(profiler::read_link_profile(f));
  return std::make_unique<profiler::ProfiledCostModel>(std::move(roofline), cluster, ops,
                                                        op_files, links, link_files);
}

// The step time of `plan` simulated in a child process (one SimGrid engine per process; called
// before this process starts its own); `what` names the simulation in an error.
double step_time_in_child(const strategies::Plan& plan, const profiler::CostModel& cost,
                          const sim::SimOptions& options, const std::string& what) {
  const auto step = [&] {
    return std::vector<double>{sim::simulate(plan, cost, options).step_time_s};
  };
  return numbers_in_child(what, step).at(0);
}

// The step at each dp a shrink reaches: the strategy with dp d, the global batch d/dp of it
// (each replica keeps its batch), on the first world * d/dp GPUs.
std::map<int, double> shrunk_step_times(const Inputs& in, const strategies::Plan& plan,
                                        const sim::FailureSpec& spec,
                                        const profiler::CostModel& cost,
                                        const sim::SimOptions& options) {
  std::map<int, double> times;
  const int dp = plan.strategy.dp;
  for (int d : sim::shrink_dps(spec, dp)) {
    Inputs smaller = in;
    smaller.strategy.dp = d;
    smaller.strategy.global_batch_size = in.strategy.global_batch_size / dp * d;
    try {
      const strategies::Plan p = lower_inputs(smaller, plan.world_size / dp * d, &cost);
      times[d] = step_time_in_child(p, cost, options,
                                    "the simulation of strategy '" + plan.strategy.name +
                                        "' at a smaller dp (for failures.reaction \"shrink\")");
    } catch (const ConfigError& e) {
      throw ConfigError("failures.reaction = \"shrink\": strategy '" + plan.strategy.name +
                        "' with dp " + std::to_string(d) + " (global_batch_size " +
                        std::to_string(smaller.strategy.global_batch_size) + "): " + e.what());
    }
  }
  return times;
}

// A federated strategy's round (docs/federated.md): the WAN aggregation simulated in a child,
// the local step `step_time_s` as simulated on one site's GPUs.
struct FederatedJob {
  std::vector<int> participants;
  double update_bytes = 0;
  std::string update_dtype;
  sim::WanAggregation wan;
  std::optional<sim::HeAggregation> he;
  double dp_noise_s = 0;
  // Per site; a step of -1 is the first site's own (the main simulation's), as is every site
  // whose node groups are the first site's but for their names.
  std::vector<sim::SiteStep> site_steps;
};

// A site's node groups without their names, to tell sites of the same hardware apart.
json::Json site_hardware(const strategies::ClusterSpec& c, const std::string& site) {
  json::Json groups = strategies::to_json(strategies::site_cluster(c, site))["node_groups"];
  for (json::Json& g : groups) g.erase("name");
  return groups;
}

// Each site's local step: the first site's is the main simulation; a site of other hardware
// runs strategies::site_strategy on strategies::site_cluster, simulated in a child.
std::vector<sim::SiteStep> site_steps(const Inputs& in, const profiler::CostModel& cost,
                                      const sim::SimOptions& options) {
  const std::vector<std::string> sites = in.cluster.sites();
  const int first_gpus = in.cluster.site_gpus(sites.front());
  const json::Json first = site_hardware(in.cluster, sites.front());
  std::vector<sim::SiteStep> steps;
  for (const std::string& site : sites) {
    const int gpus = in.cluster.site_gpus(site);
    Inputs one = in;
    one.strategy = strategies::site_strategy(in.strategy, first_gpus, gpus);
    sim::SiteStep step{gpus, -1, static_cast<double>(one.strategy.global_batch_size)};
    if (site_hardware(in.cluster, site) != first) {
      one.cluster = strategies::site_cluster(in.cluster, site);
      one.world_size = gpus;
      try {
        const strategies::Plan p = lower_inputs(one, gpus, &cost);
        step.step_s = step_time_in_child(p, cost, options,
                                         "the simulation of site '" + site + "''s local step");
      } catch (const ConfigError& e) {
        throw ConfigError("site '" + site + "' (" + std::to_string(gpus) + " GPUs, dp " +
                          std::to_string(one.strategy.dp) + "): " + e.what());
      }
    }
    steps.push_back(step);
  }
  return steps;
}

FederatedJob federated_aggregation(const Inputs& in, const strategies::Plan& plan,
                                   const profiler::CostModel& cost,
                                   const sim::SimOptions& options) {
  const strategies::FederatedSpec& f = *in.strategy.federated;
  FederatedJob job;
  job.site_steps = site_steps(in, cost, options);
  job.participants = strategies::participating_sites(in.cluster, f);
  // FedAvg sends the model's change as fp32 (the master weights); synchronous data
  // parallelism all-reduces the gradients in their dtype (fp32 with main_grads_fp32).
  const bool grads = f.aggregation == strategies::FederatedAggregation::kSyncDp;
  const strategies::Precision dtype = grads && !plan.strategy.main_grads_fp32
                                          ? plan.strategy.precision
                                          : strategies::Precision::kFp32;
  job.update_dtype = strategies::precision_name(dtype);
  job.update_bytes = static_cast<double>(strategies::total_params(in.model)) *
                     strategies::precision_bytes(dtype);
  const double values = static_cast<double>(strategies::total_params(in.model));
  double wire_bytes = job.update_bytes;
  if (f.homomorphic_encryption) {
    job.he = sim::he_aggregation(*f.homomorphic_encryption, values,
                                 static_cast<int>(job.participants.size()));
    wire_bytes = job.he->ciphertext_bytes;
  }
  if (f.dp_sigma > 0) {
    job.dp_noise_s = sim::dp_noise_seconds(values, in.cluster.node_groups.front().gpu
                                                       .memory_bandwidth_Bps);
  }
  const int n = static_cast<int>(in.cluster.sites().size());
  const std::vector<double> numbers = numbers_in_child("the WAN aggregation", [&] {
    const sim::WanAggregation w = sim::simulate_wan_aggregation(
        *in.cluster.wan, n, job.participants, f.aggregation, wire_bytes, f.secure_aggregation);
    std::vector<double> out = {w.seconds, w.secure_aggregation_s};
    out.insert(out.end(), w.sent_bytes.begin(), w.sent_bytes.end());
    out.insert(out.end(), w.received_bytes.begin(), w.received_bytes.end());
    return out;
  });
  job.wan.seconds = numbers.at(0);
  job.wan.secure_aggregation_s = numbers.at(1);
  job.wan.sent_bytes.assign(numbers.begin() + 2, numbers.begin() + 2 + n);
  job.wan.received_bytes.assign(numbers.begin() + 2 + n, numbers.end());
  return job;
}

// The simulation options of the command line for `plan`.
sim::SimOptions sim_options(const Args& args, const strategies::Plan& plan) {
  sim::SimOptions options;
  options.fold_data_parallel = options.fold_tensor_parallel = options.aggregate_ring_steps =
      !args.has("--exact");
  // Hybrid sharding: data-parallel folding runs only the groups of replica 0's ranks, so the
  // other shard groups' and replica groups' flows would not load the links they share (the
  // simulator's folding predates those groups); every data-parallel rank runs instead.
  if (plan.zero_shard_group > 0) options.fold_data_parallel = false;
  options.record_trace = args.has("--trace");
  if (const auto ranks = args.get("--trace-ranks")) {
    options.trace_ranks = parse_rank_list("--trace-ranks", *ranks, plan.world_size);
  }
  if (const auto s = args.get("--straggler")) {
    options.speed_factors = parse_rank_factors("--straggler", *s, plan.world_size);
  }
  return options;
}

// `strata simulate --switch FILE` (docs/switching.md): each phase's step and each switch's
// resharding traffic simulated in child processes, then the first phase's step in this one
// (report.json is its report with the "switching" section).
int simulate_schedule(const Args& args, Progress& progress) {
  for (const char* flag : {"--failures", "--trace", "--trace-ranks"}) {
    if (args.has(flag)) {
      throw UsageError(std::string(flag) + " and --switch: " + flag +
                       " is for one strategy (simulate each phase's strategy with --strategy)");
    }
  }
  set_interrupt_phase("lowering the specs to Plans");
  const SwitchInputs in = load_switch_inputs(args);
  const std::unique_ptr<profiler::CostModel> cost = cost_model(args, in.inputs.cluster);
  const std::vector<SwitchPhase>& phases = in.schedule.phases;
  std::vector<strategies::Plan> plans;
  std::vector<std::string> names;  // "switch.phases.1 (strategy 'x')"
  for (std::size_t i = 0; i < phases.size(); ++i) {
    names.push_back("switch.phases." + std::to_string(i) + " (strategy '" +
                    phases[i].strategy.name + "')");
    progress.phase("lowering phase " + std::to_string(i));
    try {
      plans.push_back(lower_inputs(in.phase_inputs(i), in.inputs.world_size, cost.get()));
    } catch (const ConfigError& e) {
      throw ConfigError(in.schedule.path + ": " + names[i] + ": " + e.what() +
                        " (every phase runs on the same " + std::to_string(in.inputs.world_size) +
                        " GPUs)");
    }
    const int over = strategies::first_rank_over_capacity(plans.back());
    if (over >= 0 && !args.has("--ignore-memory")) {
      throw DoesNotFitError(names[i] + " does not fit: " + over_capacity(plans.back(), over) +
                            " (--ignore-memory simulates it anyway)");
    }
  }
  set_interrupt_phase("simulating");
  SwitchingReport sr;
  sr.schedule = in.schedule.name;
  sr.world_size = in.inputs.world_size;
  sr.phases.resize(plans.size());
  for (std::size_t i = 0; i < plans.size(); ++i) {
    sr.phases[i].strategy = plans[i].strategy.name;
    sr.phases[i].steps = phases[i].steps;
    sr.phases[i].first_step = phases[i].first_step;
    sr.phases[i].tokens_per_step =
        static_cast<double>(plans[i].strategy.global_batch_size) * plans[i].model.seq_length;
    if (i > 0) {
      progress.phase("simulating phase " + std::to_string(i));
      sr.phases[i].step_time_s = step_time_in_child(plans[i], *cost, sim_options(args, plans[i]),
                                                    "the simulation of " + names[i]);
    }
  }
  for (std::size_t i = 0; i + 1 < plans.size(); ++i) {
    progress.phase("simulating switch " + std::to_string(i));
    sr.switches.push_back(simulate_switch(plans[i], plans[i + 1], *cost));
  }
  progress.phase("simulating phase 0");
  results::Report report = sim::simulate(plans[0], *cost, sim_options(args, plans[0]));
  sr.phases[0].step_time_s = report.step_time_s;
  report.switching = switching_to_json(sr);
  set_interrupt_phase("writing the outputs");
  OutputFiles files;
  if (const auto path = args.get("--json")) {
    files.open("--json", *path) << std::setw(2) << results::report_to_json(report) << "\n";
  }
  files.commit();
  progress.clear();
  if (args.get("--json") != "-") std::cout << render_switching(sr);
  return kExitOk;
}


// A parameter-server strategy (docs/parameter-server.md): the worker's compute (one replica's
// simulated step, or a recommendation model's roofline), then the PS simulation in a child;
// report.json is the replica's report with the "ps" section (or a strata.ps_report).
int simulate_ps_strategy(const Args& args, const Inputs& in, const profiler::CostModel& cost,
                         Progress& progress) {
  for (const char* flag : {"--failures", "--trace", "--trace-ranks", "--straggler", "--rounds"}) {
    if (args.has(flag)) {
      throw UsageError(std::string(flag) + " and parameter-server strategy '" +
                       in.strategy.name + "': not modelled together (docs/parameter-server.md)");
    }
  }
  const int steps = count_flag(args, "--steps", 2, 20);
  const strategies::PsTraffic traffic = ps_traffic_of(in);
  sim::ps_hosts(in.cluster, *in.strategy.ps, traffic.workers);  // its errors before any work
  WorkerCompute compute;
  std::optional<strategies::Plan> plan;
  if (in.rec_model) {
    const std::string table =
        args.get("--efficiencies").value_or(profiler::default_efficiencies_path());
    compute = rec_worker_compute(in, profiler::load_efficiencies(table));
  } else {
    plan = lower_inputs(one_worker_inputs(in), 1, &cost);
    const int over = strategies::first_rank_over_capacity(*plan);
    if (over >= 0 && !args.has("--ignore-memory")) {
      throw DoesNotFitError("strategy '" + in.strategy.name + "': a worker does not fit: " +
                            over_capacity(*plan, over) + " (--ignore-memory simulates it anyway)");
    }
    progress.phase("simulating one worker's step");
    const double step = step_time_in_child(*plan, cost, sim_options(args, *plan),
                                           "the simulation of one worker's step");
    const double optimizer = optimizer_seconds(*plan, cost);
    compute.seconds = step - optimizer;
    std::ostringstream source;
    source << "one worker's simulated step: the strategy with dp = 1 and global batch "
           << plan->strategy.global_batch_size << " on one GPU, " << step
           << " s, less its optimizer tasks, " << optimizer << " s (the servers' work)";
    compute.source = source.str();
  }
  set_interrupt_phase("simulating the parameter servers");
  progress.phase("simulating the parameter servers");
  sim::PsReport ps{*in.strategy.ps, in.rec_model ? "recommendation" : "gpt", compute.source,
                   compute.seconds, traffic.samples_per_step, traffic, {}};
  ps.sim = sim::ps_report_from_numbers(numbers_in_child("the parameter-server simulation", [&] {
    return sim::ps_report_to_numbers(
        sim::simulate_ps(in.cluster, ps.spec, traffic, {compute.seconds}, steps));
  }));
  json::Json document;
  std::optional<results::Report> report;
  if (plan) {
    progress.phase("simulating");
    report = sim::simulate(*plan, cost, sim_options(args, *plan));
    report->ps = sim::ps_report_to_json(ps);
    document = results::report_to_json(*report);
  } else {
    document = rec_ps_report(in, sim::ps_report_to_json(ps));
  }
  set_interrupt_phase("writing the outputs");
  OutputFiles files;
  if (const auto path = args.get("--json")) {
    files.open("--json", *path) << std::setw(2) << document << "\n";
  }
  files.commit();
  progress.clear();
  if (args.get("--json") != "-") {
    if (report) std::cout << results::render_report(*report);
    std::cout << sim::render_ps_report(ps);
  }
  return kExitOk;
}

}  // namespace

int simulate_command(const std::vector<std::string>& argv) {
  if (asks_for_help(argv)) {
    std::cout << kSimulateHelp;
    return kExitOk;
  }
  const Args args(argv,
                  spec_flags_and({"--json", "--trace", "--trace-ranks", "--efficiencies",
                                  "--straggler", "--profile", "--links", "--failures", "--switch",
                                  "--rounds", "--steps"}),
                  {}, {"--ignore-memory", "--exact", "--quiet"});
  std::vector<NamedPath> inputs = spec_inputs(args);
  for (const NamedPath& p :
       flag_paths(args, {"--efficiencies", "--profile", "--links", "--failures", "--switch"})) {
    inputs.push_back(p);
  }
  check_paths(inputs, flag_paths(args, {"--trace", "--json"}));
  install_interrupt_handler("simulate");
  Progress progress("simulate", args.has("--quiet"));
  if (args.has("--switch")) return simulate_schedule(args, progress);
  const int rounds = args.get_positive_int("--rounds").value_or(100);
  set_interrupt_phase("lowering the specs to a Plan");
  progress.phase("lowering the specs to a Plan");
  // The one cost object: compute and link efficiencies from the same table (and the
  // measurements in front of it); it also prices the units a zero-bubble order is built for.
  const Inputs in = load_inputs(args, nullptr, true);
  const std::unique_ptr<profiler::CostModel> cost = cost_model(args, in.cluster);
  if (in.strategy.ps) return simulate_ps_strategy(args, in, *cost, progress);
  if (args.has("--steps")) {
    throw UsageError("--steps is for a parameter-server strategy (docs/parameter-server.md)");
  }
  const strategies::Plan plan = lower_inputs(in, in.world_size, cost.get());
  const int over = strategies::first_rank_over_capacity(plan);
  if (over >= 0 && !args.has("--ignore-memory")) {
    throw DoesNotFitError("strategy '" + plan.strategy.name +
                          "' does not fit: " + over_capacity(plan, over) +
                          " (see `strata plan`; --ignore-memory simulates it anyway)");
  }

  sim::SimOptions options = sim_options(args, plan);
  // The failure spec is read before any simulation (its errors cost nothing), and a shrink's
  // smaller-dp steps are simulated in children before this process's own engine starts.
  std::optional<sim::FailureSpec> failure_spec;
  sim::FailureJob failure_job;
  if (const auto path = args.get("--failures")) {
    failure_spec = sim::load_failure_spec(*path);
    failure_job =
        sim::failure_job(plan, in.cluster, plan.strategy.global_batch_size, in.model.seq_length);
    try {
      sim::check_failures(*failure_spec, failure_job);
    } catch (const ConfigError& e) {
      throw ConfigError(*path + ": " + e.what());
    }
    set_interrupt_phase("simulating the step at smaller dp");
    progress.phase("simulating the step at smaller dp");
    failure_job.step_time_at_dp = shrunk_step_times(in, plan, *failure_spec, *cost, options);
  }
  std::optional<FederatedJob> federated;
  if (in.strategy.federated) {
    if (args.has("--failures")) {
      throw UsageError("--failures and a federated strategy: not modelled together yet");
    }
    set_interrupt_phase("simulating the WAN aggregation");
    progress.phase("simulating the WAN aggregation");
    federated = federated_aggregation(in, plan, *cost, options);
  } else if (args.has("--rounds")) {
    throw UsageError("--rounds is for a federated strategy (docs/federated.md)");
  }
  set_interrupt_phase("simulating");
  progress.phase("simulating");
  if (progress.shown()) {
    options.progress = [&progress](std::uint64_t done, std::uint64_t total) {
      progress.fraction("simulating", done, total);
    };
  }
  results::Report report = sim::simulate(plan, *cost, options);
  std::optional<sim::FailureReport> failures;
  if (failure_spec) {
    set_interrupt_phase("simulating failures");
    progress.phase("simulating failures");
    failure_job.step_time_s = report.step_time_s;
    try {
      failures = sim::simulate_failures(*failure_spec, failure_job);
    } catch (const ConfigError& e) {
      throw ConfigError(*args.get("--failures") + ": " + e.what());
    }
    report.failures = sim::failure_report_to_json(*failures);
  }
  std::optional<sim::FederatedReport> round;
  if (federated) {
    for (sim::SiteStep& step : federated->site_steps) {
      if (step.step_s < 0) step.step_s = report.step_time_s;
    }
    round = sim::federated_round(*in.strategy.federated, in.cluster.sites(),
                                 federated->participants, federated->site_steps,
                                 federated->update_bytes, federated->update_dtype, federated->wan,
                                 rounds, federated->he, federated->dp_noise_s);
    report.federated = sim::federated_report_to_json(*round);
  }

  // Every output into its temporary file, then all renamed together.
  set_interrupt_phase("writing the outputs");
  if (args.has("--trace") || args.has("--json")) progress.phase("writing the outputs");
  OutputFiles files;
  if (const auto path = args.get("--trace")) {
    const json::Json other = results::trace_other_data("simulated", report.provenance);
    files.open("--trace", *path) << results::trace_to_json(plan, report.spans, other) << "\n";
  }
  if (const auto path = args.get("--json")) {
    files.open("--json", *path) << std::setw(2) << results::report_to_json(report) << "\n";
  }
  files.commit();
  progress.clear();
  if (args.get("--json") != "-") {
    std::cout << results::render_report(report);
    if (failures) std::cout << sim::render_failure_report(*failures);
    if (round) std::cout << sim::render_federated_report(*round);
  }
  return kExitOk;
}

}  // namespace strata::cli
