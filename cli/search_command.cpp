// `strata search`: explore a space of strategies with the fast estimator (search/), verify the
// best K by simulating each in a child `strata simulate` (one SimGrid engine per process), N at a
// time, and re-rank them by simulated step time. docs/search.md.
// defines: kSearchHelp, search_command
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/farm.hpp"
#include "cli/launch.hpp"
#include "cli/progress.hpp"
#include "cli/specs.hpp"
#include "common/error.hpp"
#include "profiler/roofline.hpp"
#include "results/report.hpp"
#include "search/search.hpp"

namespace strata::cli {

namespace fs = std::filesystem;

const char* const kSearchHelp =
    R"(Usage: strata search --model M --cluster C [--gpus N] [--global-batch B] --out DIR [options]

Find the fastest strategy for a model on a cluster. Every point of the search space (tp, pp,
micro-batch size, schedule and virtual stages, ZeRO stage, sequence parallelism, recompute,
gradient bucket size, and per-layer hybrids of recompute and tp) is checked by the rules of a
hand-written strategy and priced by a fast estimator built on the Plan and the cost model
(microseconds per candidate, no SimGrid); candidates over the device memory are dropped. The
best K by estimate are then simulated, each by a child `strata simulate`, and ranked by their
simulated step time. docs/search.md.

Required:
  --model M            model spec file or bundled name (configs/models/)
  --cluster C          cluster spec file or bundled name (configs/clusters/)
  --out DIR            the output folder (replaced; written as DIR.partial and renamed)

Options:
  --gpus N             the world: the first N GPUs of the cluster (default: all)
  --nodes N            rescale a uniform cluster to N nodes
  --global-batch B     sequences per step (default: the base strategy's global_batch_size)
  --strategy S         the base strategy: the fields the search does not vary (precision,
                       attention, main_grads_fp32, collectives, ...) and the global batch come
                       from it (default: bf16, the defaults of docs/specs.md)
  --set PATH=VALUE     override a model, cluster or base-strategy field (repeatable)
  --space FILE         space.json narrowing the space (docs/search.md "The space"; default:
                       tp powers of two up to a node, pp powers of two up to the layers,
                       micro-batch 1-8, gpipe/1f1b/interleaved (v 2, 4), ZeRO 0-3, sp off/on,
                       recompute none/selective/full, buckets 25/100 MiB, per-layer hybrids)
  --top K              candidates to verify by simulation (default 8); "all" verifies every
                       candidate that fits (an exhaustive search; slow for large spaces)
  --budget-s T         start no simulation after T seconds in all, except the first (the
                       verified ones stay; default: no limit)
  --jobs N             simulations at a time on each rank (default: the host's cores,
                       shared by the ranks on that host)
  --rank-timeout S     under mpirun: a rank silent for S seconds is lost and its simulation
                       goes to another rank; when rank 0 is silent that long, the others end
                       the job (default 60)
  --efficiencies FILE  the roofline's efficiency table (estimator and simulations)
  --exact              simulate without folding (passed to strata simulate)
  --quiet              no progress on stderr
  --help               show this help

Output: a ranked table on stdout (strategy, estimated and simulated step time, tokens/s, MFU,
peak memory, the estimator's error against the simulation) and the estimator's Spearman rank
correlation and mean error over the verified candidates; DIR/ranking.csv (the verified
candidates, simulated rank order), DIR/explored.csv (the 1000 best estimates), DIR/best/NN.json
(the verified strategies, ready for strata simulate --strategy), DIR/search.json (the space,
counts, timings, agreement), DIR/runs/NN/ (each simulation's report.json and log) and
DIR/timing.csv (the rank, attempts, start and seconds of each simulation).

Across machines: under `mpirun -np N` (or srun) rank 0 explores and hands the simulations to
every rank, as strata sweep does (docs/distributed.md); the output is the same as one
process's.

A candidate whose simulation finds a rank over its device memory (exit 3) is dropped and the
next estimate verified in its place. The same inputs give the same output (--budget-s aside).

Exit codes: 0 success, 1 invalid input or a space with no valid strategy, 2 usage error, 3 no
candidate fits in memory, 4 a simulation failed, 70 internal error.
)";

namespace {

std::string fixed(double v, int digits) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

std::string two_digits(std::size_t i) {
  const std::string s = std::to_string(i);
  return s.size() < 2 ? "0" + s : s;
}

struct Verified {
  search::Candidate candidate;
  std::size_t index = 0;  // in the ranking by estimate (0-based)
  int exit_code = -1;
  results::Report report;
  std::string error;
  double sim_peak_bytes = 0;
};

}  // namespace

int search_command(const std::vector<std::string>& argv) {
  if (asks_for_help(argv)) {
    std::cout << kSearchHelp;
    return kExitOk;
  }
  const auto start = std::chrono::steady_clock::now();
  const Args args(argv,
                  spec_flags_and({"--out", "--global-batch", "--space", "--top", "--budget-s",
                                  "--jobs", "--rank-timeout", "--efficiencies"}),
                  {}, {"--exact", "--quiet"});
  const fs::path out = results_directory("--out", args.require("--out"));
  std::size_t top = 8;
  bool verify_all = false;
  if (const auto t = args.get("--top")) {
    if (*t == "all") {
      verify_all = true;
    } else {
      top = static_cast<std::size_t>(args.get_positive_int("--top").value());
    }
  }
  double budget_s = 0;
  if (const auto b = args.get("--budget-s")) {
    try {
      std::size_t used = 0;
      budget_s = std::stod(*b, &used);
      if (used != b->size() || !(budget_s > 0) || !std::isfinite(budget_s))
        throw std::invalid_argument("");
    } catch (const std::exception&) {
      throw ConfigError("--budget-s = " + *b + ": must be a number of seconds > 0");
    }
  }
  const bool quiet = args.has("--quiet");

  // The specs: model and cluster as any command loads them; the base strategy from --strategy,
  // or the defaults (with --global-batch).
  json::Json default_base = {
      {"name", "search"},      {"tp", 1}, {"pp", 1}, {"dp", 1}, {"micro_batch_size", 1},
      {"global_batch_size", 1}};
  if (!args.has("--strategy") && !args.has("--global-batch")) {
    throw UsageError("--global-batch B is required without --strategy (the sequences per step)");
  }
  Inputs in = load_inputs(args, &default_base);
  refuse_federated(in.strategy, "search");
  if (in.model.unpadded_vocab_size > 0) {  // the search pads the vocabulary for each tp
    in.model.vocab_size = in.model.unpadded_vocab_size;
    in.model.unpadded_vocab_size = 0;
  }
  strategies::StrategySpec base = in.strategy;
  if (args.has("--global-batch")) {
    base.global_batch_size = args.get_positive_int("--global-batch").value();
  }
  if (in.world_size > in.cluster.total_gpus()) {
    throw ConfigError("--gpus = " + std::to_string(in.world_size) + ": the cluster '" +
                      in.cluster.name + "' has " + std::to_string(in.cluster.total_gpus()) +
                      " GPUs");
  }
  search::Space space;
  if (const auto s = args.get("--space")) space = search::load_space(*s);
  std::vector<NamedPath> inputs = spec_inputs(args);
  for (const NamedPath& p : flag_paths(args, {"--space", "--efficiencies"})) inputs.push_back(p);
  check_paths(inputs, {}, {{"--out", out.string()}});

  const profiler::RooflineCostModel cost(profiler::load_efficiencies(
      args.get("--efficiencies").value_or(profiler::default_efficiencies_path())));

  // Explore.
  search::ExploreStats stats;
  std::vector<search::Candidate> ranked;
  {
    Progress progress("strata search", quiet);
    ranked = search::explore(in.model, in.cluster, in.world_size, base, space, cost, stats,
                             [&](long long done, long long total) {
                               progress.fraction("exploring the space", done, total);
                             });
  }
  if (!quiet) {
    std::cerr << "strata search: explored " << stats.combinations << " points in "
              << fixed(stats.seconds, 2) << " s: " << stats.estimated << " strategies estimated ("
              << stats.hybrids << " per-layer hybrids), " << stats.invalid
              << " refused by the rules, " << stats.duplicates << " duplicates, "
              << stats.over_memory << " over the memory budget; " << ranked.size() << " fit"
              << std::endl;
  }
  if (ranked.empty()) {
    char peak[64];
    std::snprintf(peak, sizeof peak, "%.1f GiB", stats.smallest_peak_bytes / (1u << 30));
    throw DoesNotFitError("no strategy of the space fits " + in.model.name + " on " +
                          std::to_string(in.world_size) + " GPUs of '" + in.cluster.name +
                          "': the smallest estimated peak is " + peak + ", the device has " +
                          fixed(in.cluster.group_of_gpu(0).gpu.memory_bytes / (1u << 30), 1) +
                          " GiB (widen the space: more pp, ZeRO, recompute, or more GPUs)");
  }

  // Verify: waves of the next candidates by estimate, until K have simulated or none are left.
  const fs::path staging = out.string() + ".partial";
  fs::remove_all(staging);
  fs::create_directories(staging / "runs");
  std::vector<std::string> common = {self_executable(), "simulate", "--quiet"};
  for (const char* flag : {"--model", "--cluster", "--nodes", "--efficiencies"}) {
    if (const auto v = args.get(flag)) common.insert(common.end(), {flag, *v});
  }
  for (const std::string& s : args.get_all("--set")) {
    if (s.rfind("strategy.", 0) != 0) common.insert(common.end(), {"--set", s});
  }
  if (args.has("--exact")) common.push_back("--exact");
  common.insert(common.end(), {"--gpus", std::to_string(in.world_size)});
  const double budget_bytes = in.cluster.group_of_gpu(0).gpu.memory_bytes *
                              (space.memory_fraction > 0 ? space.memory_fraction : 1);

  const std::size_t want = verify_all ? ranked.size() : std::min(top, ranked.size());
  std::vector<Verified> verified;  // simulated and fitting
  std::vector<Verified> dropped;   // over memory in the simulation
  std::vector<Verified> failed;
  std::size_t next = 0;
  const FarmOptions farm = farm_options(args, "search");
  std::vector<std::string> run_labels;      // timing.csv: the runs/NN of every job, in order
  std::vector<FarmOutcome> run_outcomes;
  // --budget-s: no simulation starts after the budget, except the first (a search always
  // returns at least one verified strategy when one fits).
  std::atomic<bool> out_of_time{false};
  std::atomic<int> started{0};
  auto over_budget = [&] {
    return budget_s > 0 && started > 0 &&
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >
               budget_s;
  };
  while (verified.size() < want && next < ranked.size() && !out_of_time) {
    std::vector<Verified> wave;
    while (wave.size() + verified.size() < want && next < ranked.size()) {
      Verified v;
      v.candidate = ranked[next];
      v.index = next++;
      v.candidate.strategy.name = "search-" + two_digits(v.index + 1);
      wave.push_back(std::move(v));
    }
    std::vector<FarmJob> jobs;
    for (Verified& v : wave) {
      const fs::path dir = staging / "runs" / two_digits(v.index + 1);
      json::Json j = strategies::to_json(v.candidate.strategy);
      j["source"] = "strata search: " + search::strategy_line(v.candidate.strategy);
      std::vector<std::string> child = common;
      child.insert(child.end(), {"--strategy", "{dir}/strategy.json", "--json",
                                 "{dir}/report.json"});
      jobs.push_back({child, {{"strategy.json", j.dump(2) + "\n"}}, dir.string(),
                      simulation_cost(in.model, v.candidate.strategy)});
      run_labels.push_back(two_digits(v.index + 1));
    }
    // --budget-s: no simulation starts after the budget, except the first.
    const FarmMayStart may_start = [&](std::size_t n) {
      if (over_budget()) {
        out_of_time = true;
        return false;  // not simulated: left out of every list
      }
      ++started;
      fs::create_directories(jobs[n].dir);
      return true;
    };
    const std::vector<FarmOutcome> outcomes =
        farm_run(jobs, farm, may_start, [&](std::size_t n, const FarmOutcome& o) {
          Verified& v = wave[n];
          if (o.exit_code == -1) return;
          const fs::path dir = jobs[n].dir;
          v.exit_code = o.exit_code;
          v.error = o.lost;
          if (v.exit_code == kExitOk) {
            try {
              v.report = results::read_report((dir / "report.json").string());
              v.sim_peak_bytes = v.report.max_peak_memory_bytes();
            } catch (const std::exception& e) {
              v.exit_code = kExitInternal;
              v.error = e.what();
            }
          }
          if (v.exit_code != kExitOk && v.error.empty()) {
            v.error = child_message((dir / "log.txt").string(), "simulate");
          }
          if (!quiet) {
            std::cerr << "strata search: verified #" << v.index + 1 << " "
                      << search::strategy_line(v.candidate.strategy) << ": "
                      << (v.exit_code == kExitOk
                              ? fixed(v.report.step_time_s, 4) + " s/step"
                              : "exit " + std::to_string(v.exit_code) + ": " + v.error)
                      << std::endl;
          }
        });
    run_outcomes.insert(run_outcomes.end(), outcomes.begin(), outcomes.end());
    for (Verified& v : wave) {
      if (v.exit_code == -1) continue;  // not started: over --budget-s
      if (v.exit_code == kExitOk && v.sim_peak_bytes <= budget_bytes) {
        verified.push_back(std::move(v));
      } else if (v.exit_code == kExitOk || v.exit_code == kExitOutOfMemory) {
        if (v.exit_code == kExitOk) v.error = "over the memory budget in the simulation";
        dropped.push_back(std::move(v));
      } else {
        failed.push_back(std::move(v));
      }
    }
  }
  std::stable_sort(verified.begin(), verified.end(), [](const Verified& a, const Verified& b) {
    if (a.report.step_time_s != b.report.step_time_s)
      return a.report.step_time_s < b.report.step_time_s;
    return a.index < b.index;
  });

  if (verified.empty() && failed.empty()) {
    fs::remove_all(staging);
    throw DoesNotFitError(
        "every candidate the search verified was over the device memory in "
        "the simulation (" +
        std::to_string(dropped.size()) + " tried; first: #" +
        std::to_string(dropped.front().index + 1) + " " +
        search::strategy_line(dropped.front().candidate.strategy) + ": " + dropped.front().error +
        ")");
  }

  // The estimator against the simulation.
  std::vector<double> est, sim;
  double error_sum = 0, error_max = 0;
  for (const Verified& v : verified) {
    est.push_back(v.candidate.estimate.step_s);
    sim.push_back(v.report.step_time_s);
    const double e =
        std::fabs(v.candidate.estimate.step_s - v.report.step_time_s) / v.report.step_time_s;
    error_sum += e;
    error_max = std::max(error_max, e);
  }
  const double rho = search::spearman(est, sim);
  const double mean_error = verified.empty() ? 0 : error_sum / verified.size();

  // Outputs.
  std::ostringstream table, csv, explored;
  csv << "rank,strategy,estimate_rank,estimated_step_s,simulated_step_s,estimator_error,"
         "tokens_per_s,tflops_per_gpu,mfu,estimated_peak_bytes,simulated_peak_bytes,capacity_bytes,"
         "tp,pp,dp,micro_batch_size,schedule,virtual_stages,zero_stage,sequence_parallel,recompute,"
         "grad_bucket_MiB,layer_overrides,file\n";
  table << "strata search: " << in.model.name << " on " << in.world_size << " GPUs of "
        << in.cluster.name << ", global batch " << base.global_batch_size << "\n";
  table << "  rank  est s/step  sim s/step   tokens/s    MFU  peak GiB  est err  strategy\n";
  for (std::size_t i = 0; i < verified.size(); ++i) {
    const Verified& v = verified[i];
    const strategies::StrategySpec& s = v.candidate.strategy;
    const std::string line = search::strategy_line(s);
    const double err = (v.candidate.estimate.step_s - v.report.step_time_s) / v.report.step_time_s;
    char row[512];
    std::snprintf(row, sizeof row, "  %4zu  %10.4g  %10.4g  %9.0f  %5.1f%%  %8.2f  %+6.1f%%  %s\n",
                  i + 1, v.candidate.estimate.step_s, v.report.step_time_s, v.report.tokens_per_s,
                  v.report.mfu * 100, v.sim_peak_bytes / (1u << 30), err * 100, line.c_str());
    table << row;
    const std::string file = "best/" + two_digits(i + 1) + ".json";
    std::string overrides;
    for (const auto& o : s.layer_overrides) {
      overrides +=
          (overrides.empty() ? "" : " ") + std::to_string(o.first) + "-" + std::to_string(o.last) +
          ":" + (o.tp > 0 ? "tp" + std::to_string(o.tp) : "") +
          (o.recompute >= 0
               ? std::string(o.tp > 0 ? "," : "") + "rc=" +
                     strategies::recompute_name(static_cast<strategies::Recompute>(o.recompute))
               : "");
    }
    csv << i + 1 << "," << csv_field(line) << "," << v.index + 1 << ","
        << shortest_number(v.candidate.estimate.step_s) << ","
        << shortest_number(v.report.step_time_s) << "," << shortest_number(err) << ","
        << shortest_number(v.report.tokens_per_s) << "," << shortest_number(v.report.tflops_per_gpu)
        << "," << shortest_number(v.report.mfu) << ","
        << shortest_number(v.candidate.estimate.peak_bytes) << ","
        << shortest_number(v.sim_peak_bytes) << ","
        << shortest_number(v.candidate.estimate.capacity_bytes) << "," << s.tp << "," << s.pp << ","
        << s.dp << "," << s.micro_batch_size << "," << strategies::schedule_name(s.schedule) << ","
        << s.virtual_stages << "," << s.zero_stage << ","
        << (s.sequence_parallel ? "true" : "false") << ","
        << strategies::recompute_name(s.recompute) << ","
        << shortest_number(s.collectives.grad_bucket_bytes / (1024.0 * 1024.0)) << ","
        << csv_field(overrides) << "," << file << "\n";
    json::Json j = strategies::to_json(s);
    j["name"] = in.model.name + "-search-" + two_digits(i + 1);
    j["source"] = "strata search: rank " + std::to_string(i + 1) + " of " +
                  std::to_string(verified.size()) + " verified for " + in.model.name + " on " +
                  std::to_string(in.world_size) + " GPUs of " + in.cluster.name + " (" + line +
                  "; simulated " + fixed(v.report.step_time_s, 4) + " s/step)";
    fs::create_directories(staging / "best");
    std::ofstream(staging / file) << j.dump(2) << "\n";
  }
  table << "  estimator vs simulation over " << verified.size() << " verified: Spearman "
        << fixed(rho, 3) << ", mean |error| " << fixed(mean_error * 100, 1) << "%, largest "
        << fixed(error_max * 100, 1) << "%\n";
  table << "  explored " << stats.combinations << " points, " << stats.estimated
        << " strategies estimated in " << fixed(stats.seconds, 2) << " s ("
        << fixed(stats.estimated / std::max(stats.seconds, 1e-9), 0) << " per second); "
        << ranked.size() << " fit; " << dropped.size()
        << " dropped by the simulation's memory check";
  if (out_of_time) table << "; stopped by --budget-s";
  table << "\n";

  explored << "estimate_rank,strategy,estimated_step_s,estimated_peak_bytes,hybrid\n";
  for (std::size_t i = 0; i < ranked.size() && i < 1000; ++i) {
    explored << i + 1 << "," << csv_field(ranked[i].line) << ","
             << shortest_number(ranked[i].estimate.step_s) << ","
             << shortest_number(ranked[i].estimate.peak_bytes) << ","
             << (ranked[i].hybrid ? "true" : "false") << "\n";
  }
  json::Json summary = {
      {"model", in.model.name},
      {"cluster", in.cluster.name},
      {"world_size", in.world_size},
      {"global_batch_size", base.global_batch_size},
      {"space", search::to_json(space)},
      {"points", stats.combinations},
      {"duplicates", stats.duplicates},
      {"invalid", stats.invalid},
      {"over_memory", stats.over_memory},
      {"estimated", stats.estimated},
      {"hybrids", stats.hybrids},
      {"fit", ranked.size()},
      {"explore_seconds", stats.seconds},
      {"mini_plans_lowered", stats.lowerings},
      {"verified", verified.size()},
      {"dropped_by_simulation", dropped.size()},
      {"failed", failed.size()},
      {"stopped_by_budget", out_of_time.load()},
      {"spearman", rho},
      {"mean_abs_error", mean_error},
      {"max_abs_error", error_max},
      {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()}};
  if (!verified.empty())
    summary["best"] = search::strategy_line(verified.front().candidate.strategy);
  write_outputs({{"--out", (staging / "ranking.csv").string(), csv.str()},
                 {"--out", (staging / "explored.csv").string(), explored.str()},
                 {"--out", (staging / "search.json").string(), summary.dump(2) + "\n"},
                 {"--out", (staging / "timing.csv").string(),
                  farm_timing_csv(run_labels, run_outcomes)}});
  fs::remove_all(out);
  fs::rename(staging, out);
  std::cout << table.str();
  std::cout << "wrote " << (out / "ranking.csv").string() << ", " << (out / "best").string()
            << "/ and " << (out / "search.json").string() << "\n";
  if (!failed.empty()) {
    std::cerr << "strata search: error: " << failed.size() << " simulation(s) failed; see "
              << (out / "runs").string() << "/NN/log.txt (first: #" << failed.front().index + 1
              << ": " << failed.front().error << ")\n";
    return kExitRuntime;
  }
  return kExitOk;
}

}  // namespace strata::cli
